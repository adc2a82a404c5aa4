"""Scale benchmark (issue 7, item 3): N hosts x M deployments, from empty to ``Synced``.

For each size: a fresh nats-server; N hosts run by bench/hostswarm.py (the real
:class:`hostagent.host.Host` with the in-memory runtime, one NATS connection each, up to
``--per-process`` hosts per process); the agent as a process on a local repository that
holds no manifest yet. Once the agent noted that empty commit ``Synced``, one commit adds M
deployments (one actor replica each) and the benchmark measures, to the ``Synced`` note on
that commit: wall time, commands sent (counted on ``lattice.<id>.ctl.host.*.>``), agent
CPU seconds (``/proc``) and the agent's peak RSS (``VmHWM``), and the CPU seconds of
all hostswarm processes and of the nats-server(s) over the same span (who else used the
machine's cores). Then, converged, the agent's
CPU over ``--resync-window`` periodic resyncs (``--resync`` s apart) starting 6 s after
Synced and after the status branch says Synced too (the executor's in-flight records have
expired, the status writer's thread is done; the last column is when that status commit
came, from the commit), per resync: an upper bound,
as it includes handling the N hosts' heartbeats during the period (hosts beat every
``--heartbeat`` s, 30 by default, to keep that share small). An agent that never goes
quiet once converged shows here as about 1000 ms per 1 s period.

Default: N, M in {10, 100}. ``--full`` adds 1000 (to 1000 x 1000); ``--pairs`` measures
N x M for the i-th N and i-th M only (``--hosts 1000,4000,10000 --deployments
1000,4000,10000 --pairs``); a size that does not reach Synced within ``--timeout`` is
reported as such and larger M for that N are skipped. ``--cluster 3`` runs each size on
three routed nats-servers (:class:`lattice.localcluster.NatsCluster`, open mode): swarm
process p is given every URL with server p mod 3 first (``connect`` tries them in order),
the agent every URL and ``--replicas 3``. Targets at 1000 x 1000: ≤ 10 s to Synced,
resync ≤ 200 ms CPU, agent RSS ≤ 250 MB; at 10,000 x 10,000 (issue 15): ≤ 10 s, ≤ 200 ms,
≤ 300 MB. The open-file limit is raised to its hard limit (10,000 hosts are 10,000
connections on one server).
Appends a table to RESULTS.md and draws bench/scale.png when matplotlib is installed
(``pip install -e '.[bench]'``). ``--profile`` runs the agent of the largest size under
cProfile and prints the top of the profile.

    python bench/bench_scale.py [--hosts 10,100] [--deployments 10,100] [--full] [--no-record]
    python bench/bench_scale.py --hosts 10000 --deployments 10000 [--cluster 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nats.aio.msg import Msg  # noqa: E402

from bench.bench_commit_to_synced import wait_synced  # noqa: E402
from bench.benchlib import (  # noqa: E402
    LOAD_NOTE,
    command_line,
    cpu_seconds,
    heading,
    load1,
    machine,
    peak_rss_mb,
    profile_file_top,
    profile_headline,
    record,
    spawn_agent,
    verdict,
)
from lattice.localcluster import NatsCluster, replicas_for  # noqa: E402
from lattice.localnats import NatsServer  # noqa: E402
from lattice.natsutil import connect  # noqa: E402
from lattice.protocol import Subjects  # noqa: E402
from tests.hostproc import ping  # noqa: E402

ACTORS = ["MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW",
          "MCNVNZX3P6JHF72ZMJKMVWNCMFPLCIDPL2FMUGMDW35M4K6YFS56M7CJ"]
LATTICE = "benchscale"
PLOT = ROOT / "bench" / "scale.png"
TARGET_WALL_S, TARGET_RESYNC_MS, TARGET_RSS_MB = 10.0, 200.0, 250.0
#: issue 15: at 10,000 x 10,000 the same wall and resync targets, RSS ≤ 300 MB
TARGET_RSS_MB_10K = 300.0
#: The resync window starts this long after Synced: after the executor's in-flight records
#: (5 s) expired and the last status write is done, so only resyncs and heartbeats remain.
SETTLE = 6.0


@dataclass
class Result:
    hosts: int
    deployments: int
    servers: int = 1
    wall_s: float | None = None  # None: not Synced within the timeout
    commands: int = 0
    cpu_s: float = 0.0
    rss_mb: float = 0.0
    resync_ms: float | None = None
    status_s: float | None = None  # commit -> the status branch's Synced commit
    hosts_cpu_s: float = 0.0  # every hostswarm process, commit -> Synced
    nats_cpu_s: float = 0.0  # every nats-server, commit -> Synced
    load: float = 0.0
    profile: str = ""
    failures: str = ""  # the agent's failed actions, by reason


FAILED = re.compile(r"failed \(attempt (\d+), retry in [\d.]+s\): (.*)$")


def failure_summary(log: str) -> str:
    """How many actions failed in the agent's log, and why (reasons with numbers and ids
    folded together), most frequent first."""
    reasons: Counter[str] = Counter()
    for line in log.splitlines():
        m = FAILED.search(line)
        if m is not None:
            reasons[re.sub(r"\b[0-9A-Z]{12,}\b|\d+", "#", m.group(2))] += 1
    if not reasons:
        return ""
    top = "; ".join(f"{n} x {why}" for why, n in reasons.most_common(3))
    return f"{sum(reasons.values())} failed actions (retried with backoff): {top}"


async def wait_status_synced(repo: Path, sha: str, timeout: float) -> float | None:
    """When the status branch got its commit saying Synced at ``sha`` (polled every
    0.1 s, at most ``timeout`` s); None if it did not."""
    want = f"Synced at {sha[:12]}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["git", "-C", str(repo), "log", "-1", "--format=%s",
                              "refs/heads/lattice/status"], capture_output=True, text=True)
        if want in out.stdout:
            return time.time()
        await asyncio.sleep(0.1)
    return None


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def deployment(k: int) -> str:
    return (f"kind: Deployment\nmetadata:\n  name: app-{k:05d}\nspec:\n  actors:\n"
            f"    - id: {ACTORS[k % 2]}\n")


def init_repo(repo: Path) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "--initial-branch=main")
    for key, value in (("user.name", "bench"), ("user.email", "bench@example.com"),
                       ("commit.gpgsign", "false")):
        git(repo, "config", key, value)
    (repo / "README.md").write_text("scale benchmark\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "empty lattice")


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it: the
    nats-server holds one descriptor per host). Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft


def swarm_url(urls: Sequence[str], p: int) -> str:
    """Every server URL, server ``p mod len(urls)`` first: swarm process ``p`` connects
    there and falls back to the others in order. Pure."""
    k = p % len(urls)
    return ",".join([*urls[k:], *urls[:k]])


def start_swarms(urls: Sequence[str], n: int, per: int, tmp: Path, heartbeat: float
                 ) -> list[tuple[subprocess.Popen[bytes], Path]]:
    out = []
    for p in range(math.ceil(n / per)):
        url = swarm_url(urls, p)
        ready = tmp / f"swarm-{p}.ready"
        log = tmp / f"swarm-{p}.log"
        count = min(per, n - p * per)
        with open(log, "wb") as f:
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "hostswarm.py"), "--nats-url", url,
                 "--lattice", LATTICE, "--count", str(count), "--first", str(p * per),
                 "--heartbeat", str(heartbeat), "--ready-file", str(ready)],
                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        out.append((proc, ready))
    return out


def stop_swarms(swarms: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
    for proc, _ in swarms:
        if proc.poll() is None:
            proc.terminate()
    for proc, _ in swarms:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def one_size(n: int, m: int, args: argparse.Namespace, tmp: Path,
                   profile: bool) -> Result:
    res = Result(hosts=n, deployments=m, servers=max(1, args.cluster), load=load1())
    server: NatsServer | NatsCluster
    if args.cluster > 1:
        server = NatsCluster(args.cluster, tmp / "nats", name="benchscale")
        urls = server.urls
    else:
        server = NatsServer(data_dir=tmp / "nats")
        urls = []
    server.start()
    urls = urls or [server.url]
    extra = ["--replicas", str(replicas_for(args.cluster))] if args.cluster > 1 else []
    swarms: list[tuple[subprocess.Popen[bytes], Path]] = []
    agent = None
    commands = 0

    async def on_command(_msg: Msg) -> None:
        nonlocal commands
        commands += 1

    try:
        nc = await connect(",".join(urls))
        await nc.subscribe(f"{Subjects(LATTICE).prefix}.ctl.host.*.>", cb=on_command)
        swarms = start_swarms(urls, n, args.per_process, tmp, args.heartbeat)
        deadline = time.monotonic() + 60 + n * 0.2
        while not all(r.exists() for _, r in swarms):
            if time.monotonic() > deadline or any(p.poll() is not None for p, _ in swarms):
                raise RuntimeError(f"{n} hosts did not start; see {tmp}/swarm-*.log")
            await asyncio.sleep(0.1)
        found = await ping(nc, LATTICE, timeout=5.0 + n / 1000, expect=n)
        if len(found) != n:
            raise RuntimeError(f"{len(found)} of {n} hosts answered a ping")
        repo = tmp / "repo"
        init_repo(repo)
        prof = tmp / "agent.prof" if profile else None
        agent = spawn_agent(repo=repo, nats_url=server.url, lattice=LATTICE,
                            data_dir=tmp / "agent", resync=args.resync, profile=prof,
                            extra_args=extra)
        await wait_synced(repo, git(repo, "rev-parse", "HEAD"), 120)
        deps = repo / "deployments"
        deps.mkdir()
        for k in range(m):
            (deps / f"app-{k:05d}.yaml").write_text(deployment(k))
        git(repo, "add", "-A")
        cpu0 = cpu_seconds(agent.pid)
        servers = server.members if isinstance(server, NatsCluster) else [server]
        spids = [m.pid for m in servers if m.pid is not None]
        others0 = (sum(cpu_seconds(p.pid) for p, _ in swarms),
                   sum(cpu_seconds(pid) for pid in spids))
        commands = 0
        git(repo, "commit", "-q", "-m", f"{m} deployments")
        t0 = time.time()
        sha = git(repo, "rev-parse", "HEAD")
        try:
            synced = await wait_synced(repo, sha, args.timeout)
        except TimeoutError:
            res.cpu_s = cpu_seconds(agent.pid) - cpu0
            res.rss_mb = peak_rss_mb(agent.pid)
            res.commands = commands
            agent.stop(60)
            res.profile = profile_file_top(prof, 25) if prof is not None else ""
            res.failures = failure_summary(agent.log())
            lines = agent.log().splitlines()
            warnings = [ln for ln in lines if " WARNING " in ln or " ERROR " in ln]
            print(f"{n} x {m}: not Synced within {args.timeout:g} s; the agent logged "
                  f"{len(warnings)} warnings/errors; last lines:\n  "
                  + "\n  ".join([*warnings[-5:], "...", *lines[-8:]]), flush=True)
            return res
        res.wall_s = synced - t0
        if os.environ.get("BENCH_AGENT_TRACEMALLOC"):  # its allocations now (tracemalloc_run)
            os.kill(agent.pid, signal.SIGUSR1)
        res.cpu_s = cpu_seconds(agent.pid) - cpu0
        res.hosts_cpu_s = sum(cpu_seconds(p.pid) for p, _ in swarms) - others0[0]
        res.nats_cpu_s = sum(cpu_seconds(pid) for pid in spids) - others0[1]
        res.commands = commands
        # converged: CPU over a few resync periods, once the tail of the work is over
        # (the status branch says Synced too: its writer thread renders thousands of files)
        written = await wait_status_synced(repo, sha, args.timeout)
        res.status_s = written - t0 if written is not None else None
        await asyncio.sleep(max(0.0, max(synced, written or 0.0) + SETTLE - time.time()))
        c1, w1 = cpu_seconds(agent.pid), time.monotonic()
        await asyncio.sleep(args.resync * args.resync_window)
        periods = (time.monotonic() - w1) / args.resync
        res.resync_ms = (cpu_seconds(agent.pid) - c1) * 1000 / periods
        res.rss_mb = peak_rss_mb(agent.pid)
        agent.stop(30)
        res.failures = failure_summary(agent.log())
        if prof is not None:
            res.profile = profile_file_top(prof, 25)
        await nc.close()
    finally:
        if agent is not None and agent.alive():
            agent.stop(10)
        stop_swarms(swarms)
        server.stop()
    return res


def table(results: list[Result]) -> list[str]:
    lines = ["| hosts | deployments | to Synced (s) | commands | agent CPU (s) | "
             "agent peak RSS (MB) | CPU per resync period (ms) | load | nats servers | "
             "status branch Synced (s) | hosts CPU (s) | nats CPU (s) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        wall = f"{r.wall_s:.2f}" if r.wall_s is not None else "not Synced"
        rs = f"{r.resync_ms:.0f}" if r.resync_ms is not None else "-"
        lines.append(f"| {r.hosts} | {r.deployments} | {wall} | {r.commands} | "
                     f"{r.cpu_s:.2f} | {r.rss_mb:.0f} | {rs} | {r.load:.2f} | {r.servers} | "
                     f"{f'{r.status_s:.1f}' if r.status_s is not None else '-'} | "
                     f"{r.hosts_cpu_s:.1f} | {r.nats_cpu_s:.1f} |")
    return lines


def plot(results: list[Result]) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install -e '.[bench]'): no plot"
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for n in sorted({r.hosts for r in results}):
        rows = [r for r in results if r.hosts == n and r.wall_s is not None]
        ms = [r.deployments for r in rows]
        axes[0].plot(ms, [r.wall_s for r in rows], "o-", label=f"{n} hosts")
        axes[1].plot(ms, [r.cpu_s for r in rows], "o-", label=f"{n} hosts")
        axes[2].plot(ms, [r.resync_ms for r in rows], "o-", label=f"{n} hosts")
        axes[3].plot(ms, [r.rss_mb for r in rows], "o-", label=f"{n} hosts")
    for ax, title in zip(axes, ("wall time to Synced (s)", "agent CPU to Synced (s)",
                                "agent CPU per resync period (ms)", "agent peak RSS (MB)"),
                         strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("deployments")
        ax.set_title(title)
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90)
    return f"plot: {PLOT.relative_to(ROOT)}"


def target_lines(results: list[Result]) -> list[str]:
    """Verdicts against the 1000 x 1000 targets, on the largest size that converged, and
    the sizes that did not."""
    done = [r for r in results if r.wall_s is not None and r.resync_ms is not None]
    out = [f"- {r.hosts} x {r.deployments}: NOT Synced within the timeout "
           f"({r.commands} commands sent, agent CPU {r.cpu_s:.1f} s)"
           for r in results if r.wall_s is None]
    if not done:
        return out
    b = max(done, key=lambda r: r.hosts * r.deployments)
    wall, resync = b.wall_s or 0.0, b.resync_ms or 0.0
    big = b.hosts * b.deployments > 1000 * 1000
    rss_target = TARGET_RSS_MB_10K if big else TARGET_RSS_MB
    scope = ("" if (b.hosts, b.deployments) in ((1000, 1000), (10000, 10000))
             else " (targets are for 1000 x 1000 and 10,000 x 10,000)")
    out.append(
        f"- largest converged size {b.hosts} x {b.deployments}{scope}: to Synced {wall:.1f} s "
        f"({verdict(wall, TARGET_WALL_S, 's')}), CPU per resync period {resync:.0f} ms "
        f"({verdict(resync, TARGET_RESYNC_MS)}), peak RSS {b.rss_mb:.0f} MB "
        f"({verdict(b.rss_mb, rss_target, 'MB')})")
    return out


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: Sequence[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=ints, default=[10, 100])
    ap.add_argument("--deployments", type=ints, default=[10, 100])
    ap.add_argument("--full", action="store_true", help="hosts and deployments 10,100,1000")
    ap.add_argument("--pairs", action="store_true",
                    help="the i-th hosts with the i-th deployments, not every combination")
    ap.add_argument("--cluster", type=int, default=0,
                    help="N routed nats-servers (0 or 1: one server)")
    ap.add_argument("--per-process", type=int, default=250, help="hosts per swarm process")
    ap.add_argument("--heartbeat", type=float, default=30.0, help="hosts' heartbeat, s")
    ap.add_argument("--resync", type=float, default=1.0, help="the agent's --resync, s")
    ap.add_argument("--resync-window", type=int, default=5, help="resync periods measured")
    ap.add_argument("--timeout", type=float, default=300.0, help="per size, to Synced")
    ap.add_argument("--profile", action="store_true", help="profile the largest size's agent")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep each size's logs, repository and profile under this dir")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--results", type=Path, default=None, help="append here instead")
    args = ap.parse_args(argv)
    if args.full:
        args.hosts = args.deployments = [10, 100, 1000]
    if args.pairs:
        if len(args.hosts) != len(args.deployments):
            ap.error("--pairs needs as many --hosts as --deployments")
        sizes = list(zip(args.hosts, args.deployments, strict=True))
    else:
        sizes = [(n, m) for n in args.hosts for m in args.deployments]
    nofile = raise_nofile()
    if max(n for n, _ in sizes) + 1000 > nofile:
        print(f"warning: open-file limit {nofile} is low for {max(sizes)[0]} hosts")
    results: list[Result] = []
    failed: set[int] = set()
    for n, m in sizes:
        if n in failed:
            print(f"{n} hosts x {m} deployments: skipped (a smaller M did not converge)")
            continue
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            where = Path(tmp)
            if args.keep is not None:  # the logs and the profile stay for reading
                where = args.keep / f"{n}x{m}-{time.strftime('%H%M%S')}"
                where.mkdir(parents=True)
            r = asyncio.run(one_size(n, m, args, where,
                                     args.profile and (n, m) == sizes[-1]))
        results.append(r)
        if r.wall_s is None:
            failed.add(n)
        print(table([r])[-1], flush=True)
        if r.failures:
            print(f"  {n} x {m}: {r.failures}", flush=True)
        if r.profile:
            print(f"agent profile at {n}x{m}:\n{r.profile}")
    lines = table(results)
    print("\n".join(lines))
    note = "no plot (--no-plot)" if args.no_plot else plot(results)
    print(note)
    verdicts = target_lines(results)
    profiled = next((r for r in results if r.profile), None)
    if not args.no_record:
        record([heading("scale, N hosts x M deployments, empty → Synced"),
                f"- machine: {machine()} ({LOAD_NOTE}; the load column is the 1-minute "
                f"load when each size started)",
                f"- command: `{command_line('bench_scale.py', argv)}`",
                f"- hosts: hostswarm processes of ≤ {args.per_process} hosts, one NATS "
                f"connection each, heartbeat {args.heartbeat:g} s; agent --resync "
                f"{args.resync:g} s; one actor replica per deployment",
                "- nats: " + (f"cluster of {args.cluster} routed servers (open mode), swarm "
                              f"processes spread over them, agent --replicas "
                              f"{replicas_for(args.cluster)}" if args.cluster > 1
                              else "one server"),
                "", *lines, "", *verdicts,
                *[f"- {r.hosts} x {r.deployments}: {r.failures}" for r in results
                  if r.failures],
                *([f"- agent profiled at {profiled.hosts} x {profiled.deployments}: "
                   f"{profile_headline(profiled.profile)}"] if profiled else []),
                f"- {note}"], **({"results": args.results} if args.results else {}))
    return results


if __name__ == "__main__":
    main()
