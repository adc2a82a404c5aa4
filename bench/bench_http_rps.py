"""Benchmark (issue 13): HTTP request → ``wascc:http_server`` → WebAssembly actor → HTTP
response, on one host.

Everything real: a nats-server (the host needs it for gantry and its commands; no request
crosses it), one ``lattice-host --runtime wasm`` process running the ``wascc:http_server``
/ ``http`` provider, and an echo actor bound to it on a free loopback port: waSCC's own
signed ``echo.wasm`` (``../shared/fixtures/wascc/``, which answers with the request as
JSON) when it is there, else ``tests/wasm/http_echo.wat`` (which answers with the request's
MessagePack); ``--actor`` chooses. This process is the client (aiohttp, keep-alive
connections), on the same 2-core machine: it competes with the host for CPU, so the
numbers are pessimistic for the host, as bench_actor_rps.py's (the NATS figure) are.

* **latency**: one request in flight at a time for ``--latency-seconds`` (3 s): p50, p95;
* **throughput**: ``--concurrency`` (64) requests in flight for ``--seconds`` (10 s):
  completed requests per second, and the latency of those requests.

Appends to bench/RESULTS.md, or to ``--results FILE`` (the smoke test's).

    python bench/bench_http_rps.py [--seconds 10] [--latency-seconds 3] [--concurrency 64]
                                   [--actor auto|wascc|wat] [--no-record] [--results FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.benchlib import (  # noqa: E402
    command_line,
    cpu_seconds,
    heading,
    machine,
    record_options,
    run_in_tmp,
    summary,
)
from lattice.claims import verify_module  # noqa: E402
from lattice.gantry import Gantry  # noqa: E402
from lattice.localnats import NatsServer, free_port  # noqa: E402
from lattice.natsutil import connect  # noqa: E402
from lattice.protocol import (  # noqa: E402
    CommandOp,
    EventType,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
)
from tests.hostproc import EventRecorder, HostPool, command  # noqa: E402
from tests.wasmutil import signed  # noqa: E402

LATTICE = "bench"
CAPABILITY = "wascc:http_server"
WASCC_ECHO = ROOT.parent / "shared" / "fixtures" / "wascc" / "echo.wasm"
PATH = "/hello?a=1"
BODY = b"x" * 64


def actor(choice: str) -> tuple[bytes, str]:
    """The module to run and how RESULTS.md names it."""
    if choice == "wascc" or (choice == "auto" and WASCC_ECHO.is_file()):
        return WASCC_ECHO.read_bytes(), "waSCC's echo.wasm (fixture, answers JSON)"
    wasm, _ = signed("http_echo", [CAPABILITY])
    return wasm, "tests/wasm/http_echo.wat (answers the request's MessagePack)"


async def one(session: aiohttp.ClientSession, url: str) -> float | None:
    """The milliseconds of one POST, or None when it failed."""
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=BODY) as r:
            data = await r.read()
    except aiohttp.ClientError:
        return None
    if r.status != 200 or not data:
        return None
    return (time.perf_counter() - t0) * 1000


async def latency(session: aiohttp.ClientSession, url: str, seconds: float) -> list[float]:
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        took = await one(session, url)
        assert took is not None, "a request failed with one in flight"
        samples.append(took)
    return samples


async def throughput(session: aiohttp.ClientSession, url: str, seconds: float,
                     concurrency: int) -> tuple[int, list[float], int]:
    samples: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < end:
            took = await one(session, url)
            if took is None:
                errors += 1
            else:
                samples.append(took)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return round(len(samples) / elapsed), samples, errors


async def measure(args: argparse.Namespace, tmp: Path) -> list[str]:
    wasm, named = actor(args.actor)
    actor_id = verify_module(wasm).subject
    port = free_port()
    server = NatsServer(data_dir=tmp / "nats")
    server.start()
    try:
        nc = await connect(server.url)
        await Gantry(nc, LATTICE).push(wasm)
        async with EventRecorder(nc, LATTICE) as bus:
            with HostPool(server.url, LATTICE, log_dir=tmp / "hosts", heartbeat=2.0) as pool:
                proc = pool.spawn(labels={}, name="bench-host", runtime="wasm")
                [hello] = await bus.wait_for(EventType.HOST_STARTED, timeout=60)
                for op, payload in [
                    (CommandOp.PROVIDER_START,
                     StartProviderCommand(capability_id=CAPABILITY, vendor_id="http")),
                    (CommandOp.ACTOR_START, StartActorCommand(actor_id=actor_id)),
                    (CommandOp.BINDING_PUT,
                     PutBindingCommand(actor_id=actor_id, capability_id=CAPABILITY,
                                values={"PORT": str(port)})),
                ]:
                    ack = await command(nc, LATTICE, hello.source, op, payload, timeout=60)
                    if not ack.accepted:
                        raise SystemExit(f"{op}: {ack.reason}\n{proc.log()[-2000:]}")
                url = f"http://127.0.0.1:{port}{PATH}"
                connector = aiohttp.TCPConnector(limit=args.concurrency)
                async with aiohttp.ClientSession(connector=connector) as session:
                    await latency(session, url, 0.5)  # warm-up
                    single = await latency(session, url, args.latency_seconds)
                    host0, client0 = cpu_seconds(proc.pid), time.process_time()
                    rps, loaded, errors = await throughput(session, url, args.seconds,
                                                           args.concurrency)
                    host_cpu = cpu_seconds(proc.pid) - host0
                    client_cpu = time.process_time() - client0
        await nc.close()
    finally:
        server.stop()
    return [
        heading("HTTP request → wascc:http_server → wasm actor → HTTP response, one host"),
        f"- machine: {machine()}",
        f"- command: `{command_line('bench_http_rps.py', args.argv)}`",
        f"- setup: nats-server, one `lattice-host --runtime wasm` process, {named} bound to "
        f"wascc:http_server/http on 127.0.0.1; POST {PATH} with {len(BODY)}-byte bodies "
        "over keep-alive connections; the client (aiohttp) runs in the benchmark process "
        "on the same machine",
        f"- one request in flight, {args.latency_seconds:g} s: {summary(single)}",
        f"- {args.concurrency} in flight, {args.seconds:g} s: {rps} req/s, errors {errors}; "
        f"latency {summary(loaded)}; CPU meanwhile: host {host_cpu / args.seconds:.0%} of a "
        f"core ({host_cpu * 1e6 / max(1, len(loaded)):.0f} µs a request), client "
        f"{client_cpu / args.seconds:.0%}",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--latency-seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--actor", choices=["auto", "wascc", "wat"], default="auto",
                        help="waSCC's echo.wasm (the fixture) or tests/wasm/http_echo.wat; "
                             "auto: the fixture when it is there")
    record_options(parser)
    run_in_tmp(parser.parse_args(argv), argv, measure, "bench-http-")


if __name__ == "__main__":
    main()
