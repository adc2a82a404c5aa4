"""Benchmark: from a commit on a watched local repository to the note on that commit.

The pipeline is the agent's git half, in-process: :func:`gitsync.watch.watch_heads`
(watchfiles on the refs) → :meth:`GitSource.evaluate` (every commit changes the manifests,
so every evaluation really parses) → :meth:`StatusWriter.note`. The committer plays the
user and runs ``git commit``; each commit waits for its note before the next one.

Two clocks per commit: from the start of the ``git commit`` process (conservative: it
includes git's own run time) and from its return (the ref is updated just before git
exits). Results are appended to bench/RESULTS.md with date, machine and command.
Target: p50 ≤ 100 ms from the start of ``git commit``.

    python bench/bench_commit_to_note.py -n 50
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gitsync.source import GitSource  # noqa: E402
from gitsync.status import StatusWriter  # noqa: E402
from gitsync.watch import watch_heads  # noqa: E402
from lattice.protocol import utcnow  # noqa: E402
from lattice.status import Phase, RevisionNote  # noqa: E402

ACTOR = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW"
TARGET_P50_MS = 100.0


def manifest(i: int) -> str:
    return (f"kind: Deployment\nmetadata:\n  name: bench\nspec:\n  actors:\n"
            f"    - id: {ACTOR}\n      replicas: {i % 100}\n")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


async def measure(repo: Path, commits: int, timeout: float) -> tuple[list[float], list[float]]:
    source = GitSource.open(str(repo), data_dir=repo.parent / "data")
    writer = StatusWriter(source)
    noted: dict[str, float] = {}
    changed = asyncio.Event()
    stop = asyncio.Event()

    async def follow() -> None:
        async for sha in watch_heads(source, stop=stop):
            ev = await asyncio.to_thread(source.evaluate, sha)
            now = utcnow()
            note = RevisionNote(revision=sha, first_seen=now, updated=now, errors=ev.errors,
                                phase=Phase.SYNCED if ev.valid else Phase.INVALID)
            await asyncio.to_thread(writer.note, sha, note)
            noted[sha] = time.perf_counter()
            changed.set()

    task = asyncio.create_task(follow())
    from_start: list[float] = []
    from_return: list[float] = []
    try:
        while not noted:  # the initial head is noted first
            await asyncio.wait_for(changed.wait(), timeout)
            changed.clear()
        for i in range(commits):
            (repo / "deployments" / "bench.yaml").write_text(manifest(i + 1))
            await asyncio.to_thread(git, repo, "add", "-A")
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                "git", "-C", str(repo), "commit", "-q", "-m", f"bench {i}")
            await proc.wait()
            t1 = time.perf_counter()
            sha = await asyncio.to_thread(git, repo, "rev-parse", "HEAD")
            deadline = time.monotonic() + timeout
            while sha not in noted:
                changed.clear()
                if sha in noted:
                    break
                await asyncio.wait_for(changed.wait(), max(0.0, deadline - time.monotonic()))
            from_start.append((noted[sha] - t0) * 1000)
            from_return.append((noted[sha] - t1) * 1000)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout)
        writer.close()
        source.close()
    return from_start, from_return


def machine() -> str:
    gitv = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{platform.node()}, {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
            f"Python {platform.python_version()}, {gitv}")


def summary(name: str, values: list[float]) -> str:
    return (f"{name}: p50 {percentile(values, 50):.1f} ms, p95 {percentile(values, 95):.1f} ms, "
            f"max {max(values):.1f} ms")


def record(results: Path, commits: int, start: list[float], ret: list[float]) -> str:
    p50 = percentile(start, 50)
    verdict = "met" if p50 <= TARGET_P50_MS else "NOT met"
    lines = [
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: commit → note, local repository",
        f"- machine: {machine()}",
        f"- command: `{shlex.join(['python', *sys.argv])}`",
        f"- commits: {commits}",
        f"- {summary('from `git commit` start', start)}",
        f"- {summary('from `git commit` return', ret)}",
        f"- target p50 ≤ {TARGET_P50_MS:.0f} ms (from start): {verdict}",
        "",
    ]
    if not results.exists():
        results.write_text("# Benchmark results\n\nAppended by the scripts in bench/; "
                           "newest last.\n\n")
    with results.open("a") as f:
        f.write("\n".join(lines) + "\n")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--commits", type=int, default=50)
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for one note before giving up")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-note-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        git(repo, "init", "-q", "--initial-branch=main")
        git(repo, "config", "user.name", "bench")
        git(repo, "config", "user.email", "bench@example.com")
        git(repo, "config", "commit.gpgsign", "false")
        (repo / "deployments").mkdir()
        (repo / "deployments" / "bench.yaml").write_text(manifest(0))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "initial")
        start, ret = asyncio.run(measure(repo, args.commits, args.timeout))
    print(record(args.results, args.commits, start, ret))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
