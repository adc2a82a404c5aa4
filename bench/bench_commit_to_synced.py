"""Benchmark (issue 7, item 1): from ``git commit`` to a ``Synced`` note, end to end.

Everything real: a nats-server (:class:`lattice.localnats.NatsServer`), 3 ``lattice-host``
processes (in-memory runtime), the agent as a process (``python -m reconciler.main``) on a
local repository. The benchmark plays the user: it alternates two small commits, adding and
removing a provider in a one-actor deployment, ``--commits`` times (50), waiting for each to
be ``Synced`` before the next. From the moment ``git commit`` returns it measures:

* **(a) seen**: the agent's log line ``watch ...: head of main is <sha12>`` (the watcher
  read the new tip), and **evaluated**: ``revision <sha8>: N deployments`` (parsed);
* **(b) first command**: the first host command after the commit, seen by this process
  subscribed to ``lattice.<id>.ctl.host.*.>`` (a start for "add", a stop for "remove");
* **(c) Synced**: the note on that commit says ``Synced`` (its time is the mtime of
  ``refs/notes/lattice``, i.e. when git wrote it, not when this process looked).

Log times have millisecond resolution. **The floor**, in the same run and process: an empty
scatter-gather ping of the 3 hosts + one request/reply to a host (``provider.stop`` of
nothing: acked "not running", no event) + one note written by :class:`StatusWriter` in a
scratch repository; p50 of each, summed. Headline: p50(c) / floor. Targets: p50 (c) ≤ 150 ms,
p95 ≤ 400 ms, ratio ≤ 3. ``--profile`` runs the agent under cProfile. The server runs
in operator mode with a credential per process, as ``latticectl up`` runs it (the floor's
client is the admin); ``--insecure`` measures an open server instead.

    python bench/bench_commit_to_synced.py [--commits 50] [--profile] [--insecure] [--no-record]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nats.aio.client import Client  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402

from bench.benchlib import (  # noqa: E402
    load1,
    log_times,
    percentile,
    profile_file_top,
    profile_headline,
    record_run,
    spawn_agent,
    summary,
    verdict,
)
from gitsync.source import GitSource  # noqa: E402
from gitsync.status import StatusWriter, read_note  # noqa: E402
from gitsync.statusformat import NOTES_REF  # noqa: E402
from lattice.auth.store import AuthStore  # noqa: E402
from lattice.localnats import NatsServer  # noqa: E402
from lattice.natsutil import NatsOptions, connect, scatter_gather  # noqa: E402
from lattice.protocol import (  # noqa: E402
    HostInventory,
    PingRequest,
    StopProviderCommand,
    Subjects,
    encode,
    utcnow,
)
from lattice.status import Phase, RevisionNote  # noqa: E402
from tests.hostproc import HostPool, ping  # noqa: E402

ACTOR = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW"
LATTICE = "bench"
TARGET_P50, TARGET_P95, TARGET_RATIO = 150.0, 400.0, 3.0
SEEN = re.compile(r"head of \S+ is ([0-9a-f]{12})")
EVALUATED = re.compile(r"revision ([0-9a-f]{8}): \d+ deployments")
PLANNED = re.compile(r"revision ([0-9a-f]{8}): \d+ actions planned")


def manifest(with_provider: bool) -> str:
    text = (f"kind: Deployment\nmetadata:\n  name: bench\nspec:\n  actors:\n"
            f"    - id: {ACTOR}\n")
    if with_provider:
        text += "  providers:\n    - id: bench:kv\n      vendor_id: bench\n"
    return text


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def init_repo(repo: Path) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "--initial-branch=main")
    for key, value in (("user.name", "bench"), ("user.email", "bench@example.com"),
                       ("commit.gpgsign", "false")):
        git(repo, "config", key, value)
    (repo / "deployments").mkdir()
    (repo / "deployments" / "bench.yaml").write_text(manifest(False))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")


@dataclass
class Sample:
    sha: str
    kind: str  # "add" or "remove"
    committed: float  # time.time() when git commit returned
    started: float  # when git commit was started
    command: tuple[float, str] | None = None
    synced: float | None = None
    seen: float | None = None  # agent log: head of main is <sha12>
    evaluated: float | None = None  # agent log: revision <sha8>: N deployments
    planned: float | None = None  # agent log: revision <sha8>: N actions planned


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    floor: dict[str, list[float]] = field(default_factory=dict)
    commands: list[tuple[float, str]] = field(default_factory=list)


def note_mtime(git_dir: Path) -> float | None:
    try:
        return (git_dir / NOTES_REF).stat().st_mtime_ns / 1e9
    except FileNotFoundError:
        return None


async def wait_synced(repo: Path, sha: str, timeout: float) -> float:
    """When the note on ``sha`` became Synced (the notes ref's mtime at that point)."""
    git_dir = repo / ".git"
    deadline = time.monotonic() + timeout
    last: float | None = None
    while time.monotonic() < deadline:
        mtime = note_mtime(git_dir)
        if mtime is not None and mtime != last:
            note = await asyncio.to_thread(read_note, repo, sha)
            if note is not None and note.phase is Phase.SYNCED:
                after = note_mtime(git_dir)
                return mtime if after == mtime else (after or mtime)
            last = mtime
        await asyncio.sleep(0.002)
    raise TimeoutError(f"no Synced note on {sha[:12]} within {timeout}s")


async def measure_floor(nc: Client, host_id: str, scratch: Path, n: int) -> dict[str, list[float]]:
    subjects = Subjects(LATTICE)
    init_repo(scratch)
    source = GitSource.open(str(scratch), data_dir=scratch.parent / "scratch-data")
    writer = StatusWriter(source)
    head = source.head()
    out: dict[str, list[float]] = {"ping": [], "request": [], "note": []}
    try:
        for i in range(n):
            t = time.perf_counter()
            replies = await scatter_gather(nc, subjects.ping, encode(PingRequest()),
                                           timeout=2.0, max_replies=3)
            out["ping"].append((time.perf_counter() - t) * 1000)
            assert len(replies) == 3, f"{len(replies)} hosts answered the floor ping"
            t = time.perf_counter()
            await nc.request(subjects.host_command(host_id, "provider.stop"),
                             encode(StopProviderCommand(capability_id="floor:none")), timeout=2.0)
            out["request"].append((time.perf_counter() - t) * 1000)
            now = utcnow()
            note = RevisionNote(revision=head, phase=Phase.SYNCED, message=f"floor {i}",
                                first_seen=now, updated=now)
            t = time.perf_counter()
            await asyncio.to_thread(writer.note, head, note)
            out["note"].append((time.perf_counter() - t) * 1000)
    finally:
        writer.close()
        source.close()
    return out


async def measure(args: argparse.Namespace, tmp: Path) -> tuple[Run, str]:
    run = Run()
    creds: dict[str, str] = {}
    extra: list[str] = []
    if not args.insecure:  # as `latticectl up` runs it: operator mode, a user per process
        store = AuthStore(tmp / "state", LATTICE).initialise()
        for role, name in (("admin", "admin"), ("agent", "agent"), ("host", "host-a"),
                           ("host", "host-b"), ("host", "host-c")):
            creds[name] = str(store.issue(role, name).path)  # type: ignore[arg-type]
        (tmp / "server.conf").write_text(store.server_config(tmp / "jwt"))
        extra = ["-c", str(tmp / "server.conf")]
    server = NatsServer(data_dir=tmp / "nats", extra_args=extra)
    server.start()
    agent = None

    def with_creds(name: str) -> list[str]:
        return ["--creds", creds[name]] if name in creds else []

    try:
        nc = await connect(NatsOptions(url=server.url, creds_file=creds.get("admin")))
        subjects = Subjects(LATTICE)

        async def on_command(msg: Msg) -> None:
            run.commands.append((time.time(), msg.subject.rsplit(".", 2)[-2] + "."
                                 + msg.subject.rsplit(".", 1)[-1]))

        with HostPool(server.url, LATTICE, log_dir=tmp / "hosts", heartbeat=2.0) as pool:
            for zone in "abc":
                pool.spawn(labels={"zone": zone}, name=f"host-{zone}",
                           extra_args=with_creds(f"host-{zone}"))
            deadline = time.monotonic() + 60
            invs: list[HostInventory] = []
            while len(invs) < 3:
                if time.monotonic() > deadline:
                    raise TimeoutError("3 hosts did not answer a ping within 60 s")
                invs = await ping(nc, LATTICE, timeout=0.5, expect=3)
            floor = await measure_floor(nc, invs[0].host_id, tmp / "scratch", args.floor)
            run.floor = floor
            await nc.subscribe(f"{subjects.prefix}.ctl.host.*.>", cb=on_command)
            repo = tmp / "repo"
            init_repo(repo)
            prof = tmp / "agent.prof" if args.profile else None
            agent = spawn_agent(repo=repo, nats_url=server.url, lattice=LATTICE,
                                data_dir=tmp / "agent", profile=prof,
                                extra_args=with_creds("agent"))
            await wait_synced(repo, git(repo, "rev-parse", "HEAD"), 60)
            for i in range(args.commits):
                kind = "add" if i % 2 == 0 else "remove"
                (repo / "deployments" / "bench.yaml").write_text(manifest(kind == "add"))
                git(repo, "add", "-A")
                t0 = time.time()
                proc = await asyncio.create_subprocess_exec(
                    "git", "-C", str(repo), "commit", "-q", "-m", f"bench {i} {kind}")
                await proc.wait()
                t1 = time.time()
                sha = git(repo, "rev-parse", "HEAD")
                sample = Sample(sha=sha, kind=kind, committed=t1, started=t0)
                sample.synced = await wait_synced(repo, sha, args.timeout)
                run.samples.append(sample)
            agent.stop(15)
            for s in run.samples:
                s.command = next(((t, op) for t, op in run.commands if t >= s.committed), None)
            log = agent.log_path
            prof_text = profile_file_top(prof, 18) if prof is not None else ""
            seen = {m.group(1): t for t, m in log_times(log, SEEN)}
            evaluated = {m.group(1): t for t, m in log_times(log, EVALUATED)}
            planned: dict[str, float] = {}
            for t, m in log_times(log, PLANNED):
                planned.setdefault(m.group(1), t)  # the first plan for that revision
            for s in run.samples:
                s.seen = seen.get(s.sha[:12])
                s.evaluated = evaluated.get(s.sha[:8])
                s.planned = planned.get(s.sha[:8])
        await nc.close()
    finally:
        if agent is not None and agent.alive():
            agent.stop(10)
        server.stop()
    return run, prof_text


def ms_after(samples: Sequence[Sample], attr: str, kind: str | None = None) -> list[float]:
    out = []
    for s in samples:
        if kind is not None and s.kind != kind:
            continue
        t = (s.command[0] if s.command else None) if attr == "command" else getattr(s, attr)
        if t is not None:
            out.append((t - s.committed) * 1000)
    return out


def breakdown(samples: Sequence[Sample]) -> str:
    """Median time of each step, from the agent's log and this process's clocks."""
    steps = [("commit→seen", "committed", "seen"), ("seen→evaluated", "seen", "evaluated"),
             ("evaluated→planned", "evaluated", "planned"),
             ("planned→first command", "planned", "command"),
             ("first command→Synced", "command", "synced")]
    parts = []
    for name, a, b in steps:
        d = []
        for s in samples:
            ta = s.command[0] if a == "command" and s.command else getattr(s, a)
            tb = s.command[0] if b == "command" and s.command else getattr(s, b)
            if ta is not None and tb is not None:
                d.append((tb - ta) * 1000)
        parts.append(f"{name} {percentile(d, 50):.1f}")
    return "; ".join(parts) + " (ms, medians)"


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", "-n", type=int, default=50)
    ap.add_argument("--floor", type=int, default=20, help="floor repetitions")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="seconds to wait for one Synced note")
    ap.add_argument("--profile", action="store_true", help="run the agent under cProfile")
    ap.add_argument("--insecure", action="store_true",
                    help="an open nats-server (the default is operator mode, as `up` runs)")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--results", type=Path, default=None, help="append here instead")
    args = ap.parse_args(argv)
    load_before = load1()
    with tempfile.TemporaryDirectory(prefix="bench-synced-") as tmp:
        run, prof = asyncio.run(measure(args, Path(tmp)))
    s = run.samples
    seen, evaluated = ms_after(s, "seen"), ms_after(s, "evaluated")
    start_cmd, stop_cmd = ms_after(s, "command", "add"), ms_after(s, "command", "remove")
    synced = ms_after(s, "synced")
    commit_ms = [(x.committed - x.started) * 1000 for x in s]
    fl = {k: percentile(v, 50) for k, v in run.floor.items()}
    floor = sum(fl.values())
    p50c, p95c = percentile(synced, 50), percentile(synced, 95)
    ratio = p50c / floor if floor else float("nan")
    lines = [
        f"- hosts: 3 processes; commits: {len(s)} (alternating add/remove of a provider); "
        f"`git commit` itself: p50 {percentile(commit_ms, 50):.1f} ms",
        f"- (a) agent saw the new head: {summary(seen)}; evaluated it: {summary(evaluated)}",
        f"- (b) first command, add commits (provider.start): {summary(start_cmd)}; "
        f"remove commits (provider.stop): {summary(stop_cmd)}",
        f"- (c) Synced note: {summary(synced)}; p50 {verdict(p50c, TARGET_P50)}, "
        f"p95 {verdict(p95c, TARGET_P95)}",
        f"- where the time goes: {breakdown(s)}",
        f"- floor (p50 each, same run): ping of 3 hosts {fl['ping']:.1f} ms + request/reply "
        f"{fl['request']:.1f} ms + one git note {fl['note']:.1f} ms = {floor:.1f} ms",
        f"- **ratio p50(c) / floor = {ratio:.2f}**; target ≤ {TARGET_RATIO:g}: "
        f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}",
    ]
    print("\n".join(lines))
    if prof:
        print(f"\nagent profile (cumulative):\n{prof}")
        lines.append(f"- agent profiled with cProfile: {profile_headline(prof)}")
    record_run(args, argv, "commit → Synced, local repository, 3 hosts, agent process",
               "bench_commit_to_synced.py", load_before, lines)
    return {"synced_p50": p50c, "synced_p95": p95c, "ratio": ratio, "floor": floor}


if __name__ == "__main__":
    main()
