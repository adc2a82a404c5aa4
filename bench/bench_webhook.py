"""Benchmark (issue 17): how soon the agent sees a pushed commit through a forge webhook.

The setting of bench_remote_detection.py -- a bare "remote" (``file://`` URL), a working
clone playing the user, a real nats-server, one ``lattice-host``, the agent as a process
-- with the agent's ``--webhook-addr 127.0.0.1:0`` and a secret. Two ways in:

* **webhook**: ``git push`` (timed from its return), then the POST a GitHub push hook
  makes (``X-GitHub-Event: push``, ``X-Hub-Signature-256: sha256=<HMAC>``), from this
  process; also timed from the POST's answer;
* **poll**: ``git push`` and no webhook: bounded by ``--interval`` (about half of it on
  average, at most all of it, plus a fetch), the figure a webhook replaces.

"Seen" is the agent's log line ``watch ...: head of main is <sha12>`` (millisecond clock).
Target: p50 ≤ 300 ms through the webhook (the nudge's target). Appends to RESULTS.md.

    python bench/bench_webhook.py [-n 20] [--poll 4] [--interval 2] [--no-record]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_remote_detection import (  # noqa: E402
    add_common_options,
    git,
    make_remote,
    manifest,
    seen_at,
    wait_for_host,
)
from bench.benchlib import (  # noqa: E402
    load1,
    percentile,
    record_run,
    spawn_agent,
    summary,
    verdict,
)
from lattice.localnats import NatsServer  # noqa: E402
from lattice.natsutil import connect  # noqa: E402
from tests.hostproc import HostPool  # noqa: E402

LATTICE = "benchwebhook"
SECRET = b"bench-webhook-secret"
TARGET_P50 = 300.0
LISTENING = re.compile(r"webhook receiver on (http://127\.0\.0\.1:\d+/webhook)")


async def webhook_url(log: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = LISTENING.search(log.read_text(errors="replace")) if log.exists() else None
        if found:
            return found.group(1)
        await asyncio.sleep(0.05)
    raise TimeoutError("the agent's webhook receiver did not come up")


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"webhook": [], "answered": [], "http": [], "poll": []}
    server = NatsServer(data_dir=tmp / "nats")
    server.start()
    agent = None
    secret = tmp / "secret"
    secret.write_bytes(SECRET)
    try:
        nc = await connect(server.url)
        with HostPool(server.url, LATTICE, log_dir=tmp / "hosts", heartbeat=2.0) as pool:
            pool.spawn(labels={"zone": "a"}, name="host-a")
            bare, work = make_remote(tmp)
            agent = spawn_agent(repo=bare.as_uri(), nats_url=server.url, lattice=LATTICE,
                                data_dir=tmp / "agent", interval=args.interval,
                                extra_args=["--webhook-addr", "127.0.0.1:0",
                                            "--webhook-secret-file", str(secret)])
            await wait_for_host(nc, LATTICE)
            url = await webhook_url(agent.log_path)
            await seen_at(agent.log_path, git(work, "rev-parse", "HEAD"), 60)
            replicas = 1
            async with aiohttp.ClientSession() as session:
                for mode, count in (("webhook", args.pushes), ("poll", args.poll)):
                    for _ in range(count):
                        replicas = replicas % 3 + 1
                        (work / "deployments" / "bench.yaml").write_text(manifest(replicas))
                        git(work, "commit", "-q", "-am", f"{mode} {replicas}")
                        sha = git(work, "rev-parse", "HEAD")
                        proc = await asyncio.create_subprocess_exec(
                            "git", "-C", str(work), "push", "-q", "origin", "main")
                        await proc.wait()
                        t0 = time.time()
                        if mode == "webhook":
                            body = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
                            sig = hmac.new(SECRET, body, hashlib.sha256).hexdigest()
                            async with session.post(url, data=body, headers={
                                    "Content-Type": "application/json",
                                    "X-GitHub-Event": "push",
                                    "X-Hub-Signature-256": f"sha256={sig}"}) as resp:
                                if resp.status != 202:
                                    raise RuntimeError(f"webhook answered {resp.status}")
                            t1 = time.time()
                            out["http"].append((t1 - t0) * 1000)
                        seen = await seen_at(agent.log_path, sha, args.interval * 3 + 30)
                        out[mode].append((seen - t0) * 1000)
                        if mode == "webhook":
                            out["answered"].append((seen - t1) * 1000)
        await nc.close()
    finally:
        if agent is not None:
            agent.stop(10)
        server.stop()
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pushes", "-n", type=int, default=20, help="pushes with a webhook")
    ap.add_argument("--poll", type=int, default=4, help="pushes without one")
    add_common_options(ap)
    args = ap.parse_args(argv)
    load_before = load1()
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        out = asyncio.run(measure(args, Path(tmp)))
    p50 = percentile(out["webhook"], 50)
    lines = [
        f"- agent `--interval {args.interval:g} --webhook-addr 127.0.0.1:0`; remote: bare "
        "repository via file://; webhook: GitHub's push form, HMAC-signed, over loopback",
        f"- push + webhook → seen: {summary(out['webhook'])}; p50 {verdict(p50, TARGET_P50)}",
        f"- the webhook's HTTP round trip (202): {summary(out['http'])}; from its answer → "
        f"seen: {summary(out['answered'])}",
        f"- push, no webhook (poll) → seen: {summary(out['poll'])}; bound: --interval "
        f"{args.interval * 1000:.0f} ms + one fetch",
    ]
    print("\n".join(lines))
    record_run(args, argv, "remote repository: push → agent sees the commit via a webhook",
               "bench_webhook.py", load_before, lines)
    return {"webhook_p50": p50}


if __name__ == "__main__":
    main()
