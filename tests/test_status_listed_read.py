"""``read_status(..., cache=...)``, the dashboard's reader: the same report as the plain
reader, whatever changed between two status commits (a revision everywhere, a host's
last_seen, entities gone and new, an unreadable file), with the parse cache reused."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

import git

import gitsync.statusformat as statusformat
from gitsync.statusformat import read_status
from lattice.status import HostStatus, Phase
from tests.cliutil import gitops_repo, report, write_status


def test_listed_read_equals_the_plain_read_across_commits(tmp_path: Path,
                                                          monkeypatch: object) -> None:
    repo = gitops_repo(tmp_path)
    data = tmp_path / "data"
    base = report(repo.head.commit.hexsha)
    deps = {f"d{i}": base.deployments["amazing-deployment"].model_copy(
        update={"name": f"d{i}"}) for i in range(30)}
    first = base.model_copy(update={"deployments": deps})
    write_status(repo, data, first)
    cache: statusformat.ParseCache = {}
    assert read_status(repo, cache=cache) == read_status(repo)

    parsed: list[bytes] = []
    real = statusformat._load_bytes

    def counting(blob: bytes) -> object:
        parsed.append(blob)
        return real(blob)

    monkeypatch.setattr(statusformat, "_load_bytes", counting)  # type: ignore[attr-defined]
    # a new revision rewrites every deployment's file; a host's last_seen moves
    host_id, host = next(iter(first.hosts.items()))
    later = host.last_seen + timedelta(seconds=7, milliseconds=5) if host.last_seen else None
    second = first.model_copy(update={
        "deployments": {k: v.model_copy(update={"revision": "e" * 40})
                        for k, v in deps.items()},
        "hosts": {**first.hosts, host_id: host.model_copy(update={"last_seen": later})}})
    write_status(repo, data, second)
    assert read_status(repo, cache=cache) == read_status(git.Repo(repo.working_tree_dir))
    assert len(parsed) <= 2, "only the summary (and nothing else) parsed again"
    got = read_status(repo, cache=cache)
    assert got is not None and got.hosts[host_id].last_seen == later
    assert got.deployments["d3"].revision == "e" * 40

    # a read of the same commit (every file a hit by blob) keeps what the next one needs
    read_status(repo, cache=cache)
    parsed.clear()
    again = second.model_copy(update={
        "deployments": {k: v.model_copy(update={"revision": "f" * 40})
                        for k, v in second.deployments.items()}})
    write_status(repo, data, again)
    assert read_status(repo, cache=cache) == read_status(git.Repo(repo.working_tree_dir))
    assert len(parsed) <= 2, "a revision everywhere again: only the summary parsed"
    second = again

    # a real change is parsed; entities gone and new; a host gone
    parsed.clear()
    third = second.model_copy(update={
        "deployments": {**{k: v for k, v in second.deployments.items() if k != "d0"},
                        "d1": second.deployments["d1"].model_copy(
                            update={"phase": Phase.DEGRADED}),
                        "new": second.deployments["d2"].model_copy(update={"name": "new"})},
        "hosts": {k: v for k, v in second.hosts.items() if k != host_id}})
    write_status(repo, data, third)
    got = read_status(repo, cache=cache)
    assert got == read_status(git.Repo(repo.working_tree_dir))
    assert got is not None and "d0" not in got.deployments and host_id not in got.hosts
    assert got.deployments["d1"].phase is Phase.DEGRADED
    assert 2 <= len(parsed) <= 3  # the summary, d1; "new" equals d2 but for its name


def test_an_unreadable_status_file_is_skipped(tmp_path: Path) -> None:
    repo = gitops_repo(tmp_path)
    write_status(repo, tmp_path / "data", report(repo.head.commit.hexsha))
    # one more status commit, with a broken host file beside the good ones
    env = {**os.environ, "GIT_INDEX_FILE": str(tmp_path / "index"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}

    def git_(*args: str, stdin: bytes | None = None) -> str:
        return subprocess.run(["git", *args], cwd=repo.working_tree_dir, env=env,
                              input=stdin, check=True, capture_output=True).stdout.decode()

    blob = git_("hash-object", "-w", "--stdin", stdin=b"host_id: [1,\n").strip()
    git_("read-tree", "lattice/status")
    git_("update-index", "--add", "--cacheinfo", f"100644,{blob},hosts/broken.yaml")
    tree = git_("write-tree").strip()
    commit = git_("commit-tree", tree, "-p", "lattice/status", "-m", "broken").strip()
    git_("update-ref", "refs/heads/lattice/status", commit)
    got = read_status(repo, cache={})
    assert got is not None and got == read_status(repo)
    assert len(got.hosts) == 2 and all(isinstance(h, HostStatus) for h in got.hosts.values())
