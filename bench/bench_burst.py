"""Benchmark (issue 16, item 3): a burst of commits, and how much of it the lattice follows.

Everything real, as in ``bench_commit_to_synced.py``: a nats-server in operator mode, 3
``lattice-host`` processes (``--runtime memory``), the agent as a process on a local
repository holding one Deployment (an actor and the provider ``bench:kv``) and one
BindingSet binding the actor to it. A **burst** is ``--commits`` (20) commits, each
changing the provider binding: the provider's ``vendor_id`` (and the binding's) cycles
through ``--vendors`` values (2: alternating) and the binding's values change every commit.
With ``--pace S`` (default 0.016: 20 commits in 0.33 s, the issue's burst) the commits are
made first without moving the branch, then the branch moves to each in turn every S
seconds, as pushes or a script's commits land: on a 2-core machine at load 10 or more,
making a commit (GitPython, in this process) takes 40-130 ms, and the burst would not be
one. With ``--pace 0`` each commit is made and lands at once, back to back. Before each
burst the head is ``Synced``. This process subscribes to ``lattice.<id>.ctl.host.*.>`` and
counts every command the agent sends from the first commit of the burst until ``--settle``
seconds after the last commit's note says ``Synced``; it reads the note of every commit of
the burst.

Reported per burst, then as totals: the burst's span (the branch's first to last move),
provider starts and stops, all commands by op, the time from the last commit to its
``Synced`` note (the mtime of ``refs/notes/lattice`` when git wrote it), the phases of the
burst's notes, and whether the lattice ends on the last commit's vendor. Targets: at most 3
provider starts per burst, ``Synced`` on the last commit ≤ 200 ms after it.

    python bench/bench_burst.py [--bursts 3] [--commits 20] [--vendors 2] [--pace 0.016]
                                [--no-record]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import git as gitpython  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402

from bench.bench_commit_to_synced import git, wait_synced  # noqa: E402
from bench.benchlib import (  # noqa: E402
    load1,
    percentile,
    record_options,
    record_run,
    spawn_agent,
    summary,
    verdict,
)
from gitsync.status import read_note  # noqa: E402
from lattice.auth.store import AuthStore  # noqa: E402
from lattice.localnats import NatsServer  # noqa: E402
from lattice.natsutil import NatsOptions, connect  # noqa: E402
from lattice.protocol import HostInventory, Subjects  # noqa: E402
from tests.hostproc import HostPool, ping  # noqa: E402

ACTOR = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW"
LATTICE = "burst"
CAPABILITY = "bench:kv"
TARGET_STARTS, TARGET_SYNCED_MS = 3, 200.0
#: The targets are for a burst of 20 commits in at most this long; a slower "burst" (this
#: process starved on a loaded machine) is listed but judged apart.
MAX_SPAN_MS = 500.0


def manifests(vendor: str, value: int) -> dict[str, str]:
    """The repository's files for one commit: the provider from ``vendor``, the binding's
    values carrying ``value``."""
    return {
        "deployments/bench.yaml": (
            "kind: Deployment\nmetadata:\n  name: bench\nspec:\n  actors:\n"
            f"    - id: {ACTOR}\n  providers:\n    - id: {CAPABILITY}\n"
            f"      vendor_id: {vendor}\n"),
        "bindings/bench.yaml": (
            "kind: BindingSet\nmetadata:\n  name: bench\nspec:\n  bindings:\n"
            f"    - capability_id: {CAPABILITY}\n      actor: {ACTOR}\n"
            f"      vendor_id: {vendor}\n      values:\n        N: \"{value}\"\n"),
    }


def write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def init_repo(repo: Path) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "--initial-branch=main")
    for key, value in (("user.name", "bench"), ("user.email", "bench@example.com"),
                       ("commit.gpgsign", "false")):
        git(repo, "config", key, value)
    write(repo, manifests("v0", 0))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")


@dataclass
class Burst:
    shas: list[str] = field(default_factory=list)
    vendors: list[str] = field(default_factory=list)
    first: float = 0.0  # time.time() when the first git commit returned
    last: float = 0.0  # ... the last one
    synced: float = 0.0  # when the last commit's note became Synced
    commands: Counter[str] = field(default_factory=Counter)
    phases: Counter[str] = field(default_factory=Counter)
    final_vendor: str | None = None  # vendor of the running provider at the end

    @property
    def synced_ms(self) -> float:
        return (self.synced - self.last) * 1000

    @property
    def span_ms(self) -> float:
        return (self.last - self.first) * 1000


def provider_vendor(invs: Sequence[HostInventory]) -> str | None:
    found = {p.vendor_id for inv in invs for p in inv.providers if p.capability_id == CAPABILITY}
    return found.pop() if len(found) == 1 else (",".join(sorted(found)) or None)


async def measure(args: argparse.Namespace, tmp: Path) -> list[Burst]:
    store = AuthStore(tmp / "state", LATTICE).initialise()
    creds = {name: str(store.issue(role, name).path)  # type: ignore[arg-type]
             for role, name in (("admin", "admin"), ("agent", "agent"), ("host", "host-a"),
                                ("host", "host-b"), ("host", "host-c"))}
    (tmp / "server.conf").write_text(store.server_config(tmp / "jwt"))
    server = NatsServer(data_dir=tmp / "nats", extra_args=["-c", str(tmp / "server.conf")])
    server.start()
    agent = None
    bursts: list[Burst] = []
    seen: list[tuple[float, str]] = []
    try:
        nc = await connect(NatsOptions(url=server.url, creds_file=creds["admin"]))

        async def on_command(msg: Msg) -> None:
            seen.append((time.time(), ".".join(msg.subject.rsplit(".", 2)[-2:])))

        with HostPool(server.url, LATTICE, log_dir=tmp / "hosts", heartbeat=2.0) as pool:
            for zone in "abc":
                pool.spawn(labels={"zone": zone}, name=f"host-{zone}",
                           extra_args=["--creds", creds[f"host-{zone}"]])
            deadline = time.monotonic() + 60
            while len(await ping(nc, LATTICE, timeout=0.5, expect=3)) < 3:
                if time.monotonic() > deadline:
                    raise TimeoutError("3 hosts did not answer a ping within 60 s")
            await nc.subscribe(f"{Subjects(LATTICE).prefix}.ctl.host.*.>", cb=on_command)
            repo = tmp / "repo"
            init_repo(repo)
            agent = spawn_agent(repo=repo, nats_url=server.url, lattice=LATTICE,
                                data_dir=tmp / "agent", extra_args=["--creds", creds["agent"]])
            await wait_synced(repo, git(repo, "rev-parse", "HEAD"), 60)
            n = 0
            work = gitpython.Repo(repo)
            for _ in range(args.bursts):
                burst = Burst()
                mark = len(seen)
                parent = work.head.commit
                for _ in range(args.commits):
                    n += 1
                    vendor = f"v{n % args.vendors}"
                    files = manifests(vendor, n)
                    write(repo, files)
                    work.index.add(list(files))
                    parent = work.index.commit(f"burst commit {n} {vendor}",
                                               parent_commits=[parent], head=args.pace == 0)
                    burst.shas.append(parent.hexsha)
                    burst.vendors.append(vendor)
                    if args.pace == 0:
                        burst.last = time.time()
                        burst.first = burst.first or burst.last
                mark = len(seen) if args.pace else mark  # from the first landing
                for sha in burst.shas if args.pace else ():
                    work.head.reference.set_commit(sha)
                    burst.last = time.time()
                    burst.first = burst.first or burst.last
                    await asyncio.sleep(args.pace)  # the burst's pace
                burst.synced = await wait_synced(repo, burst.shas[-1], args.timeout)
                await asyncio.sleep(args.settle)  # a benchmark's observation window
                burst.commands = Counter(op for _t, op in seen[mark:])
                for sha in burst.shas:
                    note = await asyncio.to_thread(read_note, repo, sha)
                    burst.phases[str(note.phase) if note else "no note"] += 1
                burst.final_vendor = provider_vendor(
                    await ping(nc, LATTICE, timeout=0.5, expect=3))
                bursts.append(burst)
            work.close()
            agent.stop(15)
        await nc.close()
    finally:
        if agent is not None and agent.alive():
            agent.stop(10)
        server.stop()
    return bursts


def lines_for(bursts: Sequence[Burst]) -> list[str]:
    out = []
    for k, b in enumerate(bursts, 1):
        ops = ", ".join(f"{op} {c}" for op, c in sorted(b.commands.items())) or "none"
        notes = ", ".join(f"{p} {c}" for p, c in sorted(b.phases.items()))
        out.append(
            f"- burst {k}: {len(b.shas)} commits in {b.span_ms:.0f} ms; provider starts "
            f"{b.commands['provider.start']}, stops {b.commands['provider.stop']}; "
            f"commands {sum(b.commands.values())} ({ops}); last commit → Synced "
            f"{b.synced_ms:.0f} ms; notes: {notes}; lattice ends on "
            f"{b.final_vendor} (last commit: {b.vendors[-1]})")
    fast = [b for b in bursts if b.span_ms <= MAX_SPAN_MS]
    starts = [b.commands["provider.start"] for b in fast] or [-1]
    slow = [(round(b.span_ms), b.commands["provider.start"]) for b in bursts if b not in fast]
    synced = [b.synced_ms for b in bursts]
    matches = sum(b.final_vendor == b.vendors[-1] for b in bursts)
    out += [
        f"- provider starts per burst of ≤ {MAX_SPAN_MS:g} ms ({len(fast)} of {len(bursts)}): "
        f"max {max(starts)}, mean {sum(starts) / len(starts):.1f}; target ≤ {TARGET_STARTS}: "
        f"{'met' if fast and max(starts) <= TARGET_STARTS else 'NOT met'}"
        + (f"; slower bursts (span ms, starts): {slow}" if slow else ""),
        f"- commands per burst: {[sum(b.commands.values()) for b in bursts]}",
        f"- last commit → Synced: {summary(synced)}; max "
        f"{verdict(max(synced), TARGET_SYNCED_MS)}",
        f"- lattice on the last commit's vendor after {matches} of {len(bursts)} bursts",
    ]
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--commits", "-n", type=int, default=20, help="commits per burst")
    ap.add_argument("--vendors", type=int, default=2, help="vendor ids cycled through")
    ap.add_argument("--pace", type=float, default=0.016,
                    help="seconds between two commits landing (0: make and land each at once)")
    ap.add_argument("--settle", type=float, default=0.5,
                    help="seconds commands are still counted after the Synced note")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="seconds to wait for the last commit's Synced note")
    ap.add_argument("--label", default="", help="a word for the heading (e.g. before/after)")
    record_options(ap)
    args = ap.parse_args(argv)
    load_before = load1()
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        bursts = asyncio.run(measure(args, Path(tmp)))
    lines = lines_for(bursts)
    print("\n".join(lines))
    record_run(args, argv, f"burst of commits → lattice, 3 hosts, agent process"
               f"{' (' + args.label + ')' if args.label else ''}",
               "bench_burst.py", load_before, lines)
    return {"max_starts": float(max(b.commands["provider.start"] for b in bursts)),
            "synced_p50": percentile([b.synced_ms for b in bursts], 50)}


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        sys.exit(f"bench_burst: {exc}")
