"""Many lattice hosts in one process, for bench/bench_scale.py.

Each host is the real :class:`hostagent.host.Host` with the in-memory runtime and its own
NATS connection (its own client id, subscriptions and heartbeats), exactly as
``lattice-host`` runs one; only the process is shared, so a thousand hosts fit a 2-core
machine. Writes ``ready <count>`` to ``--ready-file`` once every host announced itself;
SIGTERM/SIGINT stops every host (``host_stopped``) and exits. The open-file limit is raised
to its hard limit first (one socket per host).

    python bench/hostswarm.py --nats-url nats://127.0.0.1:4222 --lattice bench \
        --count 250 --first 0 --heartbeat 30 --ready-file /tmp/ready
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hostagent.host import Host, HostConfig  # noqa: E402
from lattice.natsutil import NatsOptions, connect  # noqa: E402

log = logging.getLogger("hostswarm")
ZONES = "abcd"


async def run(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hosts: list[Host] = []

    async def one(i: int) -> Host:
        nc = await connect(NatsOptions(url=args.nats_url, name=f"swarm-{i}"),
                           initial_timeout=60.0)
        host = Host(nc, HostConfig(name=f"h{i:05d}", labels={"zone": ZONES[i % 4]},
                                   lattice=args.lattice, heartbeat_s=args.heartbeat,
                                   environ={}))
        await host.start()
        return host

    first = args.first
    for start in range(first, first + args.count, args.batch):
        batch = range(start, min(first + args.count, start + args.batch))
        hosts += await asyncio.gather(*(one(i) for i in batch))
        if stop.is_set():
            break
    Path(args.ready_file).write_text(f"ready {len(hosts)}\n")
    log.info("%d hosts up", len(hosts))
    await stop.wait()
    for host in hosts:
        try:
            await asyncio.wait_for(host.stop(), 5)
            await asyncio.wait_for(host.nc.drain(), 2)
        except Exception as exc:  # shutting down: keep stopping the others
            log.warning("host %s: %s", host.config.name, type(exc).__name__)
            await host.nc.close()
    return 0


def raise_nofile() -> None:
    """Soft open-file limit up to the hard one: each host holds a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("open-file limit stays %d: %s", soft, exc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nats-url", required=True)
    ap.add_argument("--lattice", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--first", type=int, default=0, help="number of the first host")
    ap.add_argument("--heartbeat", type=float, default=30.0)
    ap.add_argument("--batch", type=int, default=50, help="hosts connecting at once")
    ap.add_argument("--ready-file", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_nofile()
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
