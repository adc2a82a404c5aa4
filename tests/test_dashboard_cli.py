"""``latticectl dashboard`` as a real process: the URL first, pages served, Ctrl-C ends it
with 0; a taken port and a missing repository are one-line errors (exit 2)."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

from tests.cliutil import clean_env, gitops_repo, interrupt, latticectl, report, write_status
from tests.helpers import eventually_sync


def test_prints_the_url_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    repo = gitops_repo(tmp_path)
    write_status(repo, tmp_path / "data", report(repo.head.commit.hexsha))
    out = tmp_path / "out"
    proc = latticectl("--repo", str(repo.working_tree_dir), "dashboard", "--no-browser",
                      "--addr", "127.0.0.1:0", env=clean_env(tmp_path), out=out)
    try:
        first = eventually_sync(lambda: out.read_text().split("\n", 1)[0]
                                if "\n" in out.read_text() else None,
                                timeout=30, message="the URL line")
        assert first.startswith("Dashboard: http://127.0.0.1:"), first
        url = first.removeprefix("Dashboard: ")
        page = eventually_sync(lambda: p if "amazing-deployment" in (p := _get(url))
                               else None, timeout=15, message="the overview")
        assert 'data-phase="Synced"' in page
    finally:
        code = interrupt(proc)
    assert code == 0, out.read_text()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def test_a_taken_port_is_an_error(tmp_path: Path) -> None:
    repo = gitops_repo(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = tmp_path / "out"
        proc = latticectl("--repo", str(repo.working_tree_dir), "dashboard", "--no-browser",
                          "--addr", f"127.0.0.1:{port}", env=clean_env(tmp_path), out=out)
        assert proc.wait(timeout=30) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in out.read_text()


def test_no_repository_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = latticectl("--repo", str(tmp_path / "nowhere"), "dashboard", "--no-browser",
                      "--addr", "127.0.0.1:0", env=clean_env(tmp_path), out=out)
    assert proc.wait(timeout=30) == 2
    text = out.read_text()
    assert "no such directory" in text and "Traceback" not in text
