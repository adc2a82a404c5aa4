"""Benchmark (issue 15): ``kill -9`` of the host running an actor → the replacement answers.

Everything real and secured (operator mode, as ``latticectl up`` runs it): a nats-server
(or, with ``--cluster 3``, three routed ones, each host on a server of its own), three
``lattice-host --runtime wasm`` processes with issued host and apps credentials, the
``vinculum`` agent process with ``--monitor-creds`` (grace ``--grace``, 250 ms), a git
repository deploying the example ``echo`` actor (signed, pushed to gantry, trusted) bound
to ``wascc:messaging``/``nats`` on ``bench.failover``. The provider is pinned to one host
(``role=provider``) and the actor to the two others (``role=worker``), so each kill moves
the actor and nothing else. Hosts heartbeat every ``--heartbeat`` (2 s, as under ``up``):
without the advisories the agent would wait 3 of them (6 s).

Each of ``-n`` (20) rounds: the actor answers; the worker running it is killed with -9;
this process times, from the kill (wall clock):

* the server's DISCONNECT advisory (a second monitor user, subscribed here);
* the agent declaring the host gone (its log line, millisecond clock);
* the ``actor.start`` command on the lattice (a copy, subscribed on ``ctl.host.*.>``);
* the replacement's ``actor_started`` event;
* the first request to ``bench.failover`` answered with its body (requests every 10 ms,
  each waiting up to 100 ms, sent only once the killed process was reaped).

Then the killed host is started again (same credentials: same host id), so there are
always three. Goal: kill → answering p50 ≤ 500 ms, p95 ≤ 1 s.

    python bench/bench_failover.py [-n 20] [--cluster 3] [--grace 250ms]
                                   [--heartbeat 2] [--no-record] [--results FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.benchlib import (  # noqa: E402
    command_line,
    heading,
    load1,
    log_times,
    machine,
    percentile,
    record_options,
    run_in_tmp,
    summary,
    verdict,
)
from cli.examples import build_examples  # noqa: E402
from cli.gantry_cmd import trust_by_default  # noqa: E402
from lattice.advisories import ClientDisconnect, ClientEvent, subscribe_advisories  # noqa: E402
from lattice.auth.store import AuthStore, Issued  # noqa: E402
from lattice.gantry import Gantry  # noqa: E402
from lattice.localcluster import NatsCluster  # noqa: E402
from lattice.localnats import NatsServer  # noqa: E402
from lattice.natsutil import NatsOptions, connect  # noqa: E402
from lattice.protocol import EventType, HostInventory  # noqa: E402
from tests.agentproc import spawn_agent  # noqa: E402
from tests.gitrepo import commit_files, init_repo  # noqa: E402
from tests.hostproc import HostProcess, ping, spawn_host  # noqa: E402
from tests.lattice_e2e import EventLog  # noqa: E402

LATTICE = "fo"  # short: see the report on host JWT size vs max_control_line
SUBJECT = "bench.failover"
BODY = b"are you there?"
GONE = re.compile(r"host (\w+) closed its connection")


#: each step alone: (label, from, to), "" being the kill
ALONE = [("advisory (kill → DISCONNECT here)", "", "disconnect"),
         ("grace and the agent's timer (DISCONNECT → gone)", "disconnect", "gone"),
         ("plan and auction (gone → actor.start)", "gone", "command"),
         ("start on the host (actor.start → actor_started)", "command", "started"),
         ("first answer (actor_started → answers)", "started", "answered")]


@dataclass
class Round:
    """Seconds after the kill (wall clock) of each step of one round; None: not seen."""

    disconnect: float | None = None
    gone: float | None = None
    command: float | None = None
    started: float | None = None
    answered: float | None = None


@dataclass
class Rig:
    url: str
    host_urls: list[str]
    store: AuthStore
    tmp: Path
    heartbeat: float
    apps: Issued = field(init=False)
    hosts: dict[str, HostProcess] = field(default_factory=dict)
    creds: dict[str, Issued] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.apps = self.store.issue("apps", "apps")

    def spawn(self, name: str) -> HostProcess:
        if name not in self.creds:  # a restart keeps its credentials: the same host id
            self.creds[name] = self.store.issue("host", name)
        creds = self.creds[name]
        i = sorted(self.creds).index(name)
        role = "provider" if name == "host-p" else "worker"
        proc = spawn_host(self.host_urls[i % len(self.host_urls)], LATTICE,
                          labels={"role": role}, name=name, heartbeat=self.heartbeat,
                          log_dir=self.tmp / "hosts", runtime="wasm",
                          extra_args=["--creds", str(creds.path),
                                      "--apps-creds", str(self.apps.path)])
        self.hosts[name] = proc
        return proc


def manifests(actor: str) -> dict[str, dict[str, object]]:
    return {
        "deployments/echo.yaml": {
            "apiVersion": "vinculum.io/v1", "kind": "Deployment",
            "metadata": {"name": "echo"},
            "spec": {"actors": [{"id": actor, "affinity_rules": ["role=worker"]}],
                     "providers": [{"id": "wascc:messaging", "vendor_id": "nats",
                                    "affinity_rules": ["role=provider"]}]}},
        "bindingsets/echo.yaml": {
            "apiVersion": "vinculum.io/v1", "kind": "BindingSet",
            "metadata": {"name": "echo"},
            "spec": {"bindings": [{"capability_id": "wascc:messaging", "actor": actor,
                                   "vendor_id": "nats",
                                   "values": {"SUBSCRIPTION": SUBJECT}}]}},
    }


async def answers(nc: object, timeout: float = 0.1) -> bool:
    try:
        reply = await nc.request(SUBJECT, BODY, timeout=timeout)  # type: ignore[attr-defined]
    except Exception:
        return False
    return bool(reply.data == BODY)


async def until(check: object, what: str, timeout: float = 60.0, *,
                on_fail: object = None) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            more = on_fail() if callable(on_fail) else ""
            raise SystemExit(f"bench: {what} not within {timeout:g}s\n{more}")
        await asyncio.sleep(0.02)


async def measure(args: argparse.Namespace, tmp: Path) -> list[str]:
    store = AuthStore(tmp / "state", LATTICE).initialise()
    servers: NatsServer | NatsCluster
    if args.cluster > 1:
        servers = NatsCluster(args.cluster, tmp / "cluster", config_text=store.server_config)
        servers.start()
        url, host_urls = servers.url, servers.urls
    else:
        conf = tmp / "server.conf"
        conf.write_text(store.server_config(tmp / "jwt"))
        servers = NatsServer(data_dir=tmp / "nats", extra_args=["-c", str(conf)])
        servers.start()
        url, host_urls = servers.url, [servers.url]
    rig = Rig(url, host_urls, store, tmp, args.heartbeat)
    admin = NatsOptions(url=url, creds_file=str(store.issue("admin", "admin").path))
    rounds: list[Round] = []
    agent = None
    try:
        nc = await connect(admin)
        echo = next(a for a in build_examples() if a.name == "echo")
        await Gantry(nc, LATTICE).push(echo.wasm)
        await asyncio.to_thread(trust_by_default, admin, LATTICE, {echo.claims.issuer})
        repo = init_repo(tmp / "repo")
        commit_files(repo, {p: yaml.safe_dump(d, sort_keys=False)
                            for p, d in manifests(echo.claims.subject).items()}, "echo")
        for name in ("host-p", "host-w1", "host-w2"):
            rig.spawn(name)
        await until(lambda: _hosts_up(nc, 3), "3 hosts answer ping",
                    on_fail=lambda: "\n".join(h.log()[-1500:] for h in rig.hosts.values()))
        agent = spawn_agent(
            repo=repo.working_tree_dir or "", nats_url=url, lattice=LATTICE,
            data_dir=tmp / "agent", resync=30.0,
            extra_args=["--creds", str(store.issue("agent", "agent").path),
                        "--monitor-creds", str(store.issue_monitor(name="agent-mon").path),
                        "--gone-grace", f"{args.grace}s",
                        *(["--replicas", "3"] if args.cluster >= 3 else [])])
        mon = await connect(NatsOptions(url=url, creds_file=str(store.issue_monitor(
            name="bench-mon").path)))
        disconnects: list[tuple[float, str]] = []

        def on_advisory(event: ClientEvent) -> None:
            if isinstance(event, ClientDisconnect) and event.client.host_id:
                disconnects.append((time.time(), event.client.host_id))

        await subscribe_advisories(mon, store.account.public_key, on_advisory)
        commands: list[tuple[float, str]] = []

        async def on_command(msg: object) -> None:
            subject = msg.subject  # type: ignore[attr-defined]
            if subject.endswith(".actor.start"):
                commands.append((time.time(), subject))

        await nc.subscribe(f"lattice.{LATTICE}.ctl.host.*.>", cb=on_command)
        await until(lambda: answers(nc, 1.0), f"echo answers\n{agent.log()[-3000:]}", 120)
        async with EventLog(nc, LATTICE) as events:  # type: ignore[arg-type]
            for _ in range(args.n):
                rounds.append(await one_round(nc, rig, events, disconnects, commands,
                                              agent.log_path))
    finally:
        from tests import agentproc, hostproc

        agentproc.stop_all()
        hostproc.stop_all()
        servers.stop()
    return report(args, rounds)


async def _hosts_up(nc: object, n: int) -> list[HostInventory] | None:
    invs = await ping(nc, LATTICE, timeout=0.5, expect=n)  # type: ignore[arg-type]
    return invs if len(invs) >= n else None


async def one_round(nc: object, rig: Rig, events: EventLog,
                    disconnects: list[tuple[float, str]], commands: list[tuple[float, str]],
                    agent_log: Path) -> Round:
    invs = await until(lambda: _actor_on_one(nc), "the actor on one worker")
    [victim_id] = [i.host_id for i in invs if i.actors]  # type: ignore[attr-defined]
    victim = next((n for n, c in rig.creds.items() if c.host_id == victim_id), None)
    if victim is None:
        raise SystemExit(f"bench: {victim_id} is none of {rig.creds}")
    await until(lambda: answers(nc, 1.0), "echo answers before the kill")
    loop = asyncio.get_running_loop()
    killed_loop, killed = loop.time(), time.time()
    proc = rig.hosts[victim].kill()
    await asyncio.to_thread(proc.wait)  # requests from here on cannot reach the victim
    while not await answers(nc):
        if time.time() - killed > 30:
            raise SystemExit(f"bench: no answer 30 s after killing {victim}")
    r = Round(answered=time.time() - killed)
    started = await events.first(EventType.ACTOR_STARTED, since=killed_loop, timeout=10)
    r.started = started[0] - killed_loop
    r.disconnect = next((t - killed for t, h in disconnects if t >= killed
                         and h == victim_id), None)
    r.command = next((t - killed for t, _ in commands if t >= killed), None)
    r.gone = next((t - killed for t, m in log_times(agent_log, GONE)
                   if t >= killed - 0.001 and m.group(1) == victim_id), None)
    rig.spawn(victim)  # back to three hosts, same id
    await until(lambda: _hosts_up(nc, 3), f"{victim} back")
    return r


async def _actor_on_one(nc: object) -> list[HostInventory] | None:
    invs = await ping(nc, LATTICE, timeout=0.5, expect=3)  # type: ignore[arg-type]
    running = [i for i in invs if i.actors]
    return invs if len(invs) == 3 and len(running) == 1 else None


def _ms(values: list[float | None]) -> list[float]:
    return [v * 1000 for v in values if v is not None]


def report(args: argparse.Namespace, rounds: list[Round]) -> list[str]:
    answered = _ms([r.answered for r in rounds])
    steps = [("DISCONNECT advisory here", "disconnect"), ("agent: host gone", "gone"),
             ("actor.start command", "command"), ("actor_started event", "started"),
             ("replacement answers", "answered")]
    where = (f"{args.cluster} routed servers, each host on its own" if args.cluster > 1
             else "one nats-server")
    lines = [
        heading(f"failover: kill -9 of the actor's host → replacement answers"
                f"{f', cluster of {args.cluster}' if args.cluster > 1 else ', one server'}"),
        f"- machine: {machine()} (load at the end {load1():.2f})",
        f"- command: `{command_line('bench_failover.py', args.argv)}`",
        f"- setup: operator mode, {where}; 3 "
        f"`lattice-host --runtime wasm` (heartbeat {args.heartbeat:g} s), example echo "
        f"actor on a `role=worker` host, wascc:messaging/nats pinned to the `role=provider` "
        f"host; agent with `--monitor-creds`, `--gone-grace {args.grace * 1000:.0f}ms`; "
        f"the killed host restarted after each round",
        f"- rounds: {len(rounds)}; kill → replacement answers {summary(answered)}; "
        f"p50 {verdict(percentile(answered, 50), 500)}, "
        f"p95 {verdict(percentile(answered, 95), 1000)}",
        "- from the kill, each step (p50 / p95 / max ms):",
    ]
    for label, attr in steps:
        lines.append(_line(label, _ms([getattr(r, attr) for r in rounds])))
    lines.append("- each step alone (p50 / p95 / max ms):")
    for label, before, after in ALONE:
        lines.append(_line(label, _ms([_between(r, before, after) for r in rounds])))
    return lines


def _between(r: Round, before: str, after: str) -> float | None:
    end = getattr(r, after)
    start = getattr(r, before) if before else 0.0
    return None if end is None or start is None else end - start


def _line(label: str, ms: list[float]) -> str:
    return (f"  - {label}: {percentile(ms, 50):.0f} / {percentile(ms, 95):.0f} / "
            f"{max(ms, default=float('nan')):.0f} (n={len(ms)})")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("-n", type=int, default=20, help="kills (rounds)")
    parser.add_argument("--cluster", type=int, default=1, help="servers (1: one server)")
    parser.add_argument("--grace", type=float, default=0.25, help="--gone-grace, seconds")
    parser.add_argument("--heartbeat", type=float, default=2.0, help="hosts' heartbeat, s")
    record_options(parser)
    run_in_tmp(parser.parse_args(argv), argv, measure, "bench-failover-")


if __name__ == "__main__":
    main()
