"""Benchmark (issue 7, item 2): how soon the agent sees a commit pushed to a remote.

A bare "remote" in a temporary directory (``file://`` URL), a working clone playing the
user, a real nats-server, one ``lattice-host`` and the agent as a process with
``--interval`` seconds between fetches (``--interval``, 2 s by default). Three ways in:

* **nudge**: ``git push`` (timed from its return), then the same :class:`SyncNudge` that
  ``latticectl apply`` publishes, from this process;
* **latticectl**: the real ``latticectl apply -f FILE`` (commit, push, nudge) as a
  process, timed from its start and from its exit (its own Python start-up included);
* **interval only**: ``git push`` and no nudge: bounded by ``--interval`` (expected about
  half of it on average, at most all of it, plus a fetch).

"Seen" is the agent's log line ``watch ...: head of main is <sha12>`` (millisecond clock).
Target: p50 ≤ 300 ms with the nudge. Prints figures and appends to RESULTS.md.

    python bench/bench_remote_detection.py [-n 20] [--interval 2] [--no-record]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from nats.aio.client import Client

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.benchlib import (  # noqa: E402
    load1,
    log_times,
    percentile,
    record_run,
    spawn_agent,
    summary,
    verdict,
)
from lattice.localnats import NatsServer  # noqa: E402
from lattice.natsutil import connect  # noqa: E402
from lattice.protocol import Subjects, SyncNudge, encode  # noqa: E402
from tests.hostproc import HostPool, ping  # noqa: E402

ACTOR = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW"
LATTICE = "benchremote"
TARGET_NUDGE_P50 = 300.0
SEEN = re.compile(r"head of \S+ is ([0-9a-f]{12})")


def manifest(replicas: int) -> str:
    return (f"kind: Deployment\nmetadata:\n  name: bench\nspec:\n  actors:\n"
            f"    - id: {ACTOR}\n      replicas: {replicas}\n")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def make_remote(tmp: Path) -> tuple[Path, Path]:
    bare, work = tmp / "remote.git", tmp / "work"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(bare)],
                   check=True)
    work.mkdir()
    git(work, "init", "-q", "--initial-branch=main")
    for key, value in (("user.name", "bench"), ("user.email", "bench@example.com"),
                       ("commit.gpgsign", "false")):
        git(work, "config", key, value)
    git(work, "remote", "add", "origin", bare.as_uri())
    (work / "deployments").mkdir()
    (work / "deployments" / "bench.yaml").write_text(manifest(1))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "initial")
    git(work, "push", "-q", "-u", "origin", "main")
    return bare, work


async def seen_at(log: Path, sha: str, timeout: float) -> float:
    """The agent's log time for seeing ``sha`` (polls the log file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t, m in log_times(log, SEEN):
            if m.group(1) == sha[:12]:
                return t
        await asyncio.sleep(0.01)
    raise TimeoutError(f"the agent did not see {sha[:12]} within {timeout}s")


async def wait_for_host(nc: Client, lattice: str, timeout: float = 60.0) -> None:
    """Until one host answers a ping on ``lattice`` (``TimeoutError`` after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not await ping(nc, lattice, timeout=0.5, expect=1):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the host did not answer within {timeout:g} s")


def add_common_options(ap: argparse.ArgumentParser) -> None:
    """``--interval``, ``--no-record`` and ``--results`` (default: RESULTS.md)."""
    ap.add_argument("--interval", type=float, default=2.0, help="the agent's --interval")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--results", type=Path, default=None, help="append here instead")


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"nudge": [], "ctl_start": [], "ctl_exit": [], "none": []}
    server = NatsServer(data_dir=tmp / "nats")
    server.start()
    agent = None
    try:
        nc = await connect(server.url)
        with HostPool(server.url, LATTICE, log_dir=tmp / "hosts", heartbeat=2.0) as pool:
            pool.spawn(labels={"zone": "a"}, name="host-a")
            bare, work = make_remote(tmp)
            agent = spawn_agent(repo=bare.as_uri(), nats_url=server.url, lattice=LATTICE,
                                data_dir=tmp / "agent", interval=args.interval)
            await wait_for_host(nc, LATTICE)
            await seen_at(agent.log_path, git(work, "rev-parse", "HEAD"), 60)
            replicas = 1
            for mode, count in (("nudge", args.commits), ("ctl", args.ctl),
                                ("none", args.no_nudge)):
                for _ in range(count):
                    replicas = replicas % 3 + 1
                    if mode == "ctl":  # latticectl writes the file itself
                        (tmp / "bench.yaml").write_text(manifest(replicas))
                        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp / "config")}
                        t0 = time.time()
                        proc = await asyncio.create_subprocess_exec(
                            str(Path(sys.executable).parent / "latticectl"), "--repo",
                            str(work), "--nats-url", server.url, "--lattice", LATTICE,
                            "apply", "-f", str(tmp / "bench.yaml"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                        _, err = await proc.communicate()
                        t1 = time.time()
                        if proc.returncode != 0:
                            raise RuntimeError(f"latticectl apply failed: {err.decode()}")
                        sha = git(work, "rev-parse", "HEAD")
                        seen = await seen_at(agent.log_path, sha, args.interval * 3 + 30)
                        out["ctl_start"].append((seen - t0) * 1000)
                        out["ctl_exit"].append((seen - t1) * 1000)
                        continue
                    (work / "deployments" / "bench.yaml").write_text(manifest(replicas))
                    git(work, "commit", "-q", "-am", f"{mode} {replicas}")
                    sha = git(work, "rev-parse", "HEAD")
                    proc = await asyncio.create_subprocess_exec(
                        "git", "-C", str(work), "push", "-q", "origin", "main")
                    await proc.wait()
                    t0 = time.time()
                    if mode == "nudge":
                        await nc.publish(Subjects(LATTICE).nudge,
                                         encode(SyncNudge(reason="bench", revision=sha)))
                        await nc.flush()
                    seen = await seen_at(agent.log_path, sha, args.interval * 3 + 30)
                    out[mode].append((seen - t0) * 1000)
        await nc.close()
    finally:
        if agent is not None:
            agent.stop(10)
        server.stop()
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", "-n", type=int, default=20, help="pushes with a nudge")
    ap.add_argument("--ctl", type=int, default=5, help="latticectl apply runs")
    ap.add_argument("--no-nudge", type=int, default=6, help="pushes without a nudge")
    add_common_options(ap)
    args = ap.parse_args(argv)
    load_before = load1()
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        out = asyncio.run(measure(args, Path(tmp)))
    p50 = percentile(out["nudge"], 50)
    lines = [
        f"- agent `--interval {args.interval:g}`; remote: bare repository via file://",
        f"- push + nudge → seen: {summary(out['nudge'])}; p50 {verdict(p50, TARGET_NUDGE_P50)}",
        f"- `latticectl apply` (commit, push, nudge; a process) → seen: from its start "
        f"{summary(out['ctl_start'])}; from its exit {summary(out['ctl_exit'])}",
        f"- push, no nudge → seen: {summary(out['none'])}; bound: --interval "
        f"{args.interval * 1000:.0f} ms + one fetch",
    ]
    print("\n".join(lines))
    record_run(args, argv, "remote repository: push → agent sees the commit",
               "bench_remote_detection.py", load_before, lines)
    return {"nudge_p50": p50}


if __name__ == "__main__":
    main()
