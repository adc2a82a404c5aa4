"""gitsync.gitcmd.cat_blobs: many blobs read by one ``git cat-file --batch`` (issue 16,
loading 10,000 manifest files), on a real repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitsync import gitcmd
from gitsync.errors import GitCommandError
from gitsync.gitcmd import cat_blobs, run_git
from tests.gitrepo import init_repo

CONTENTS = [b"", b"kind: Deployment\n", b"no newline at the end", b"\n\n\n",
            bytes(range(256)) * 3, "é\r\nü".encode(), b"x" * 70_000]


def store(git_dir: Path, data: bytes) -> tuple[str, int]:
    return run_git("hash-object", "-w", "--stdin", git_dir=git_dir, input=data), len(data)


def test_blobs_come_back_whole_and_in_order(tmp_path: Path) -> None:
    git_dir = Path(init_repo(tmp_path / "r").git_dir)
    blobs = [store(git_dir, c) for c in CONTENTS]
    assert cat_blobs(git_dir, [*blobs, blobs[1]]) == [*CONTENTS, CONTENTS[1]]
    assert cat_blobs(git_dir, []) == []


def test_a_small_batch_size_takes_more_calls_and_gives_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git_dir = Path(init_repo(tmp_path / "r").git_dir)
    blobs = [store(git_dir, c) for c in CONTENTS]
    calls: list[int] = []
    real = gitcmd._cat_batch

    def counting(git_dir: Path, ids: list[str], timeout: float) -> list[bytes]:
        calls.append(len(ids))
        return real(git_dir, ids, timeout)

    monkeypatch.setattr(gitcmd, "BATCH_BYTES", 100)
    monkeypatch.setattr(gitcmd, "_cat_batch", counting)
    assert cat_blobs(git_dir, blobs) == CONTENTS
    assert sum(calls) == len(CONTENTS) and len(calls) > 1  # a blob over the size: alone


def test_a_missing_object_is_an_error_naming_it(tmp_path: Path) -> None:
    git_dir = Path(init_repo(tmp_path / "r").git_dir)
    missing = "0123456789abcdef0123456789abcdef01234567"
    with pytest.raises(GitCommandError, match=missing):
        cat_blobs(git_dir, [store(git_dir, b"a"), (missing, 1)])
