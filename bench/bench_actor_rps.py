"""Benchmark (issue 6): request → WebAssembly actor → reply, on one host.

Everything real: a nats-server (:class:`lattice.localnats.NatsServer`), one ``lattice-host
--runtime wasm`` process, the example ``echo`` actor (examples/actors/echo.wat, signed with
the demo seeds, pushed to gantry), bound to the ``wascc:messaging``/``nats`` provider on
``bench.echo``. This process is the client, on the same 2-core machine (it competes with the
host for CPU, so the numbers are pessimistic for the host):

* **latency**: one request in flight at a time for ``--latency-seconds`` (3 s): p50, p95;
* **throughput**: ``--concurrency`` (64) requests in flight for ``--seconds`` (10 s):
  completed requests per second, and the latency of those requests.

Targets: p50 ≤ 1 ms (one in flight) and ≥ 5,000 req/s. Appends to bench/RESULTS.md, or to
``--results FILE`` (the smoke test's, at ``--seconds 1``).

    python bench/bench_actor_rps.py [--seconds 10] [--latency-seconds 3] [--concurrency 64]
                                    [--no-record] [--results FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.benchlib import (  # noqa: E402
    command_line,
    heading,
    machine,
    percentile,
    record_options,
    run_in_tmp,
    summary,
    verdict,
)
from cli.examples import build_examples  # noqa: E402
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
from tests.hostproc import EventRecorder, HostPool, command  # noqa: E402

LATTICE = "bench"
SUBJECT = "bench.echo"
BODY = b"x" * 64


async def latency(nc: object, seconds: float) -> list[float]:
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        reply = await nc.request(SUBJECT, BODY, timeout=5)  # type: ignore[attr-defined]
        samples.append((time.perf_counter() - t0) * 1000)
        assert reply.data == BODY
    return samples


async def throughput(nc: object, seconds: float, concurrency: int) -> tuple[int, list[float],
                                                                          int]:
    samples: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                reply = await nc.request(SUBJECT, BODY, timeout=5)  # type: ignore[attr-defined]
            except Exception:
                errors += 1
                continue
            if reply.data != BODY:
                errors += 1
                continue
            samples.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return round(len(samples) / elapsed), samples, errors


async def measure(args: argparse.Namespace, tmp: Path) -> list[str]:
    server = NatsServer(data_dir=tmp / "nats")
    server.start()
    try:
        nc = await connect(server.url)
        echo = next(a for a in build_examples() if a.name == "echo")
        await Gantry(nc, LATTICE).push(echo.wasm)
        async with EventRecorder(nc, LATTICE) as bus:
            with HostPool(server.url, LATTICE, log_dir=tmp / "hosts", heartbeat=2.0) as pool:
                proc = pool.spawn(labels={}, name="bench-host", runtime="wasm")
                [hello] = await bus.wait_for(EventType.HOST_STARTED, timeout=60)
                host = hello.source
                for op, payload in [
                    (CommandOp.PROVIDER_START,
                     StartProviderCommand(capability_id="wascc:messaging", vendor_id="nats")),
                    (CommandOp.ACTOR_START, StartActorCommand(actor_id=echo.claims.subject)),
                    (CommandOp.BINDING_PUT,
                     PutBindingCommand(actor_id=echo.claims.subject,
                                       capability_id="wascc:messaging",
                                       values={"SUBSCRIPTION": SUBJECT})),
                ]:
                    ack = await command(nc, LATTICE, host, op, payload, timeout=30)
                    if not ack.accepted:
                        raise SystemExit(f"{op}: {ack.reason}\n{proc.log()[-2000:]}")
                await latency(nc, 0.5)  # warm-up
                one = await latency(nc, args.latency_seconds)
                rps, loaded, errors = await throughput(nc, args.seconds, args.concurrency)
                beats = len(bus.of(EventType.HOST_HEARTBEAT, host_id=host))
        await nc.close()
    finally:
        server.stop()
    p50 = percentile(one, 50)
    return [
        heading("request → wasm actor → reply, one host"),
        f"- machine: {machine()}",
        f"- command: `{command_line('bench_actor_rps.py', args.argv)}`",
        "- setup: nats-server, one `lattice-host --runtime wasm` process, example echo actor "
        f"bound to wascc:messaging/nats on {SUBJECT}, {len(BODY)}-byte bodies; the client "
        "(nats-py) runs in the benchmark process on the same machine",
        f"- one request in flight, {args.latency_seconds:g} s: {summary(one)}; "
        f"{verdict(p50, 1.0)}",
        f"- {args.concurrency} in flight, {args.seconds:g} s: {rps} req/s "
        f"({'target ≥ 5000 req/s: ' + ('met' if rps >= 5000 else 'NOT met')}), "
        f"errors {errors}; latency {summary(loaded)}",
        f"- host heartbeats seen during the run: {beats}",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--latency-seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    record_options(parser)
    run_in_tmp(parser.parse_args(argv), argv, measure, "bench-rps-")


if __name__ == "__main__":
    main()
