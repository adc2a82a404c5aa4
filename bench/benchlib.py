"""Shared pieces of the end-to-end benchmarks in bench/: machine line, percentiles,
appending to RESULTS.md, reading the agent's log clock, and a process's CPU and peak RSS.

Not a benchmark itself. The scripts put the repository root on ``sys.path`` and import
this as ``bench.benchlib``. CPU and memory come from ``/proc`` (Linux only: utime+stime
and ``VmHWM``, the kernel's own peak RSS), so no extra dependency is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import platform
import pstats
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lattice.status import (  # noqa: E402
    Condition,
    Count,
    DeploymentStatus,
    HostStatus,
    Phase,
    Placement,
    StatusReport,
    SyncSummary,
)
from tests.agentproc import _RUNNING as agent_registry  # noqa: E402
from tests.agentproc import AgentProcess  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
#: the one actor every deployment of :func:`status_report` runs
BENCH_ACTOR = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW"
HEADER = "# Benchmark results\n\nAppended by the scripts in bench/; newest last.\n\n"
LOAD_NOTE = ("numbers taken on a shared 2-core machine while other work ran: under load "
             "they are pessimistic")

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


def machine() -> str:
    """Same shape as the other scripts' machine line, so RESULTS.md compares."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gitv = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    la = os.getloadavg()
    return (f"{platform.node()}, {platform.system()} {platform.machine()}, "
            f"{os.cpu_count()} CPUs, {mem:.0f} GiB, load {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}, "
            f"Python {platform.python_version()}, {gitv}")


def load1() -> float:
    return os.getloadavg()[0]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: Sequence[float], unit: str = "ms") -> str:
    if not values:
        return "no samples"
    return (f"p50 {percentile(values, 50):.1f} {unit}, p95 {percentile(values, 95):.1f} {unit}, "
            f"max {max(values):.1f} {unit} (n={len(values)})")


def verdict(value: float, target: float, unit: str = "ms") -> str:
    return f"target ≤ {target:g} {unit}: {'met' if value <= target else 'NOT met'}"


def command_line(script: str, argv: Sequence[str] | None) -> str:
    args = list(argv) if argv is not None else sys.argv[1:]
    return shlex.join(["python", f"bench/{script}", *args])


def record(lines: Iterable[str], results: Path = RESULTS) -> None:
    """Append a section to RESULTS.md (one write, so concurrent appenders do not mix)."""
    if not results.exists():
        results.write_text(HEADER)
    text = "\n".join([*lines, ""]) + "\n"
    with results.open("a") as f:
        f.write(text)


def record_options(parser: argparse.ArgumentParser) -> None:
    """``--no-record`` and ``--results``: where a benchmark's lines go."""
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS, help="append here instead")


def run_in_tmp(args: argparse.Namespace, argv: Sequence[str] | None,
               measure: Callable[[argparse.Namespace, Path], Awaitable[list[str]]],
               prefix: str) -> None:
    """Run ``measure(args, tmp)`` in a fresh temporary directory, print its lines and
    record them (unless ``--no-record``); ``args.argv`` is the command line as given."""
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        lines = asyncio.run(measure(args, Path(tmp)))
    print("\n".join(lines))
    if not args.no_record:
        record(lines, args.results)


def heading(title: str) -> str:
    return f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {title}"


def record_run(args: argparse.Namespace, argv: Sequence[str] | None, title: str,
               script: str, load_before: float, lines: Sequence[str], *,
               after: bool = True) -> None:
    """Unless ``--no-record``: append ``lines`` under a heading, the machine line (with the
    load before the run, and after it when ``after``) and the command line, to
    ``args.results`` (RESULTS.md when that is None)."""
    if args.no_record:
        return
    load = (f"load before the run {load_before:.2f}, after {load1():.2f}" if after
            else f"load before the run {load_before:.2f}")
    record([heading(title),
            f"- machine: {machine()} ({load}; {LOAD_NOTE})",
            f"- command: `{command_line(script, argv)}`",
            *lines], **({"results": args.results} if args.results else {}))


# ---------------------------------------------------------------------- the agent's log

def log_times(path: Path, pattern: re.Pattern[str]) -> list[tuple[float, re.Match[str]]]:
    """(epoch seconds, match) of each log line whose message matches ``pattern``.

    The agent logs with ``%(asctime)s`` (local time, millisecond resolution); this turns it
    back into the wall clock the benchmark uses (``time.time()``).
    """
    out: list[tuple[float, re.Match[str]]] = []
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        m = _LOG_LINE.match(line)
        if m is None:
            continue
        found = pattern.search(line, m.end())
        if found is None:
            continue
        t = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
        out.append((t, found))
    return out


# ---------------------------------------------------------------------- /proc

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of ``pid`` in MiB (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------- profiling

def profile_top(prof: cProfile.Profile, n: int = 12) -> str:
    """The ``n`` heaviest functions by cumulative time, as text."""
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(n)
    return buf.getvalue()


# ---------------------------------------------------------------------- processes

def spawn_agent(*, repo: str | Path, nats_url: str, lattice: str, data_dir: Path,
                resync: float = 30.0, interval: float = 30.0, lease_ttl: float = 6.0,
                profile: Path | None = None, extra_args: Sequence[str] = ()
                ) -> AgentProcess:
    """Start ``python -m reconciler.main`` (under cProfile into ``profile`` if given), its
    log in ``data_dir``; stopped by pid at exit like the tests' agents."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"agent-{time.monotonic_ns()}.log"
    prefix = [sys.executable]
    if profile is not None:
        prefix += ["-m", "cProfile", "-o", str(profile)]
    elif traced := os.environ.get("BENCH_AGENT_TRACEMALLOC"):  # bench/tracemalloc_run.py
        prefix += [str(ROOT / "bench" / "tracemalloc_run.py"), traced]
    args = [*prefix, "-m", "reconciler.main", "--repo", str(repo), "--nats-url", nats_url,
            "--lattice", lattice, "--data-dir", str(data_dir), "--resync", str(resync),
            "--interval", str(interval), "--lease-ttl", str(lease_ttl), "--log-level", "INFO",
            *extra_args]
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    agent = AgentProcess(proc, log_path)
    agent_registry[proc.pid] = agent
    return agent


def profile_file_top(path: Path, n: int = 15, sort: str = "tottime") -> str:
    """Top of a cProfile output file ("" when it was not written). By own time: in an
    asyncio process, cumulative time is dominated by the event loop waiting."""
    if not path.exists():
        return ""
    buf = io.StringIO()
    stats = pstats.Stats(str(path), stream=buf)
    stats.sort_stats(sort).print_stats(n)
    buf.write("\nhottest of ours, by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats(r"/(reconciler|gitsync|lattice)/", n)
    return buf.getvalue()


def profile_headline(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if "function calls" in ln), "")


def status_report(n: int, rev: str, *, bump: int = -1, hosts: int, provider: bool,
                  now: datetime, seen: Callable[[], datetime]) -> StatusReport:
    """A Synced status report of ``n`` one-actor deployments at ``rev`` (the ``bump``-th
    asks for 2 replicas), placed round-robin on ``hosts`` hosts ``H00000``..., each with a
    provider placement too when ``provider``. ``now`` dates the deployments; ``seen()`` is
    called for each host's ``last_seen`` and for the summary's ``updated`` (a moving clock
    makes every host file change, as the agent's reports do)."""
    deps = {}
    for i in range(n):
        name, host = f"app-{i:05d}", f"H{i % hosts:05d}"
        placements = [Placement(entity=BENCH_ACTOR, kind="actor", host_id=host, since=now)]
        if provider:
            placements.append(Placement(entity=f"bench:cap{i % 10}/default", kind="provider",
                                        host_id=host, since=now))
        deps[name] = DeploymentStatus(
            name=name, revision=rev, phase=Phase.SYNCED,
            spec={"actors": [{"id": BENCH_ACTOR, "replicas": 2 if i == bump else 1}]},
            actors=Count(ready=1, desired=1),
            providers=Count(ready=1, desired=1) if provider else Count(ready=0, desired=0),
            placements=placements,
            conditions=[Condition(type="Ready", status=True, reason="Synced",
                                  last_transition=now)],
            created=now)
    by_id = {f"H{h:05d}": HostStatus(host_id=f"H{h:05d}", name=f"h{h}", last_seen=seen())
             for h in range(hosts)}
    summary = SyncSummary(branch="main", attempted_revision=rev, applied_revision=rev,
                          phase=Phase.SYNCED, updated=seen(), deployments=n,
                          hosts=len(by_id))
    return StatusReport(summary=summary, deployments=deps, hosts=by_id)
