"""Soak benchmark (issue 12, item 2): a host starts and crashes 1,000 instances; does its
memory come back?

Everything real: a nats-server, one ``lattice-host --runtime wasm`` process, the example
echo actor as a neighbour, and ``tests/hostile/crash_hog.wat`` (signed with the demo
account): each call grows its memory to 63 MiB, writes every page of it, then traps. One
cycle is an ``actor.start`` command, a request that crashes the instance (the caller gets
the trap), and the host's ``actor_stopped`` event (``crashed: ...``). ``--module trap``
uses tests/wasm/trap.wat instead (traps at once, no memory).

Reported: the host's RSS (``VmRSS`` of its process) when idle, after ``--warmup`` cycles
(the baseline: the module compiled, every code path run once), every 100 cycles, right
after the last cycle and once settled (two samples 100 ms apart within 1 %, at most 5 s);
the peak (``VmHWM``); cycles per second; the neighbour still answering. Target: settled
RSS within 10 % of the baseline.

``--before REV`` runs the same cycles on the code of commit ``REV`` (``git archive`` into
a temporary directory, the host started with it first on ``PYTHONPATH``), only
``--before-count`` of them (20): a host that keeps crashed instances grows by 63 MiB a
cycle, and 1,000 of them would not fit this machine.

    python bench/bench_instance_soak.py [-n 1000] [--module hog|trap] [--warmup 5]
                                        [--before REV] [--before-count 20]
                                        [--no-record] [--results FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.benchlib import (  # noqa: E402
    command_line,
    heading,
    machine,
    peak_rss_mb,
    record_options,
    run_in_tmp,
)
from cli.examples import EXAMPLE_ACTORS, build_examples  # noqa: E402
from lattice.claims import sign_module  # noqa: E402
from lattice.gantry import Gantry  # noqa: E402
from lattice.localnats import NatsServer  # noqa: E402
from lattice.natsutil import connect  # noqa: E402
from lattice.protocol import (  # noqa: E402
    CommandOp,
    EventType,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
)
from tests.hostproc import EventRecorder, HostPool, HostProcess, command  # noqa: E402

LATTICE = "soak"
MODULES = {"hog": ROOT / "tests" / "hostile" / "crash_hog.wat",
           "trap": ROOT / "tests" / "wasm" / "trap.wat"}
MIB = 1 << 20


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def settled_rss_mb(pid: int, *, most_s: float = 5.0) -> tuple[float, float]:
    """(RSS once two samples 100 ms apart agree within 1 %, seconds it took)."""
    started = time.monotonic()
    last = rss_mb(pid)
    while time.monotonic() - started < most_s:
        await asyncio.sleep(0.1)
        now = rss_mb(pid)
        if abs(now - last) <= 0.01 * last:
            return now, time.monotonic() - started
        last = now
    return last, time.monotonic() - started


@dataclass
class Run:
    label: str
    cycles: int
    idle_mb: float = 0.0
    baseline_mb: float = 0.0
    samples: list[tuple[int, float]] = field(default_factory=list)  # (cycles done, MiB)
    last_mb: float = 0.0
    settled_mb: float = 0.0
    settle_s: float = 0.0
    peak_mb: float = 0.0
    seconds: float = 0.0
    neighbour: bool = False
    reason: str = ""


def signed_module(module: str) -> tuple[bytes, str]:
    """The module, signed with the demo account; (wasm, actor id)."""
    wasm = bytes(wasmtime.wat2wasm(MODULES[module].read_text()))
    signed, claims = sign_module(
        wasm, account_seed=(EXAMPLE_ACTORS / "keys" / "account.nk").read_bytes(),
        module_seed=hashlib.sha256(f"soak {module}".encode()).digest(), name=f"soak-{module}",
        capabilities=["wascc:messaging"])
    return signed, claims.subject


async def soak(args: argparse.Namespace, tmp: Path, label: str, cycles: int,
               tree: Path | None) -> Run:
    """Start a host (from ``tree`` when given), run ``cycles`` start-crash cycles."""
    run = Run(label, cycles)
    server = NatsServer(data_dir=tmp / f"nats-{label}")
    server.start()
    try:
        nc = await connect(server.url)
        echo = next(a for a in build_examples() if a.name == "echo")
        hog_wasm, hog = signed_module(args.module)
        for wasm in (echo.wasm, hog_wasm):
            await Gantry(nc, LATTICE).push(wasm)
        env = {"PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])
               } if tree is not None else None
        async with EventRecorder(nc, LATTICE) as bus:
            with HostPool(server.url, LATTICE, log_dir=tmp / f"hosts-{label}",
                          heartbeat=2.0) as pool:
                proc = pool.spawn(labels={}, name="soak-host", runtime="wasm", env=env)
                [hello] = await bus.wait_for(EventType.HOST_STARTED, timeout=60)
                host = hello.source
                run.idle_mb = rss_mb(proc.pid)
                for actor_id, subject in ((None, None), (echo.claims.subject, "soak.echo"),
                                          (hog, "soak.hog")):
                    await _setup(nc, host, proc, actor_id, subject)

                async def cycle(done: int) -> None:
                    if done:  # the first instance was started by the set-up
                        await _ok(nc, host, proc, CommandOp.ACTOR_START,
                                  StartActorCommand(actor_id=hog))
                    reply = await nc.request("soak.hog", b"", timeout=30)
                    error = (reply.headers or {}).get("Nats-Service-Error", "")
                    if not error:
                        raise SystemExit(f"cycle {done}: the module did not trap: {reply}")
                    run.reason = error
                    await bus.wait_for(EventType.ACTOR_STOPPED, host_id=host, count=done + 1,
                                       where=lambda d: d["actor_id"] == hog, timeout=30)

                for done in range(args.warmup):
                    await cycle(done)
                run.baseline_mb, _ = await settled_rss_mb(proc.pid)
                started = time.perf_counter()
                for i in range(cycles):
                    await cycle(args.warmup + i)
                    if (i + 1) % 100 == 0 or (i + 1 == cycles and cycles < 100):
                        run.samples.append((i + 1, rss_mb(proc.pid)))
                run.seconds = time.perf_counter() - started
                run.last_mb = rss_mb(proc.pid)
                run.settled_mb, run.settle_s = await settled_rss_mb(proc.pid)
                run.peak_mb = peak_rss_mb(proc.pid)
                reply = await nc.request("soak.echo", b"still here", timeout=10)
                run.neighbour = reply.data == b"still here"
        await nc.close()
    finally:
        server.stop()
    return run


async def _setup(nc: object, host: str, proc: HostProcess, actor_id: str | None,
                 subject: str | None) -> None:
    if actor_id is None:
        await _ok(nc, host, proc, CommandOp.PROVIDER_START,
                  StartProviderCommand(capability_id="wascc:messaging", vendor_id="nats"))
        return
    await _ok(nc, host, proc, CommandOp.ACTOR_START, StartActorCommand(actor_id=actor_id))
    await _ok(nc, host, proc, CommandOp.BINDING_PUT,
              PutBindingCommand(actor_id=actor_id, capability_id="wascc:messaging",
                         values={"SUBSCRIPTION": subject or ""}))


async def _ok(nc: object, host: str, proc: HostProcess, op: CommandOp,
              payload: StartActorCommand | StartProviderCommand | PutBindingCommand) -> None:
    ack = await command(nc, LATTICE, host, op, payload, timeout=30)  # type: ignore[arg-type]
    if not ack.accepted:
        raise SystemExit(f"{op}: {ack.reason}\n{proc.log()[-2000:]}")


def extract(rev: str, into: Path) -> Path:
    """The tree of commit ``rev`` in ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def lines_of(run: Run) -> list[str]:
    growth = (run.settled_mb - run.baseline_mb) / run.baseline_mb * 100
    curve = ", ".join(f"{n}: {mb:.0f}" for n, mb in run.samples)
    return [
        f"- {run.label}: {run.cycles} start-crash cycles in {run.seconds:.1f} s "
        f"({run.cycles / run.seconds:.1f}/s); RSS idle {run.idle_mb:.0f} MiB, baseline "
        f"{run.baseline_mb:.0f} MiB, after the last cycle {run.last_mb:.0f} MiB, settled "
        f"{run.settled_mb:.0f} MiB in {run.settle_s:.1f} s (**{growth:+.1f} %** of the "
        f"baseline; target within 10 %: {'met' if abs(growth) <= 10 else 'NOT met'}); "
        f"peak {run.peak_mb:.0f} MiB; the neighbour answered: "
        f"{'yes' if run.neighbour else 'NO'}",
        f"  - RSS (MiB) by cycles done: {curve}",
        f"  - the caller heard: `{run.reason[:160]}`",
    ]


async def measure(args: argparse.Namespace, tmp: Path) -> list[str]:
    runs = []
    if args.before:
        tree = extract(args.before, tmp / "before")
        runs.append(await soak(args, tmp, f"before ({args.before})", args.before_count, tree))
    runs.append(await soak(args, tmp, "now", args.n, None))
    return [
        heading(f"instance soak: {args.n} crashes of {MODULES[args.module].name}, one host"),
        f"- machine: {machine()}",
        f"- command: `{command_line('bench_instance_soak.py', args.argv)}`",
        "- setup: nats-server, one `lattice-host --runtime wasm` process, the echo actor as "
        f"a neighbour; each cycle: actor.start, a request that traps "
        f"({'63 MiB of memory written first' if args.module == 'hog' else 'at once'}), "
        "the host's actor_stopped (crashed) event",
        *[line for run in runs for line in lines_of(run)],
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("-n", type=int, default=1000, help="start-crash cycles")
    parser.add_argument("--module", choices=sorted(MODULES), default="hog")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--before", metavar="REV", help="also run on the code of REV")
    parser.add_argument("--before-count", type=int, default=20)
    record_options(parser)
    run_in_tmp(parser.parse_args(argv), argv, measure, "bench-soak-")


if __name__ == "__main__":
    main()
