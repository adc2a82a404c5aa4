"""``vinculum``'s own command line: errors an operator can fix are one line, not a
traceback (a missing repository, a NATS nobody answers on)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lattice.localnats import NatsServer, free_port


def _vinculum(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler.main", *args],
                          capture_output=True, text=True, timeout=60)


def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_a_missing_repository_is_one_line(tmp_path: Path) -> None:
    line = _one_error_line(_vinculum(
        "--repo", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path / "d"),
        "--nats-url", f"nats://127.0.0.1:{free_port()}"))
    assert line == f"Error: {tmp_path / 'nowhere'}: no such directory (and not a URL)"


def test_sync_with_nobody_on_the_nats_url_is_one_line() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    line = _one_error_line(_vinculum("--nats-url", url, "sync"))
    assert line.startswith(f"Error: cannot reach NATS at {url}"), line


def test_sync_with_no_agent_on_the_lattice_exits_1(nats_server: NatsServer) -> None:
    """A nudge nobody answers is not 'sent' and done: no agent runs there."""
    line = _one_error_line(_vinculum("--nats-url", nats_server.url, "--lattice", "nobody",
                                     "sync"))
    assert line == "Error: no agent answered on lattice nobody within 3s", line
