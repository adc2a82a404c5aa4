"""lattice/advisories.py: the records, the pure GoneDetector (ManualClock), and the real
thing -- an operator-mode nats-server, a monitor user, host processes killed with -9."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client

from lattice.advisories import (
    MAX_ADVISORY_BYTES,
    ClientConnect,
    ClientDisconnect,
    ClientEvent,
    GoneDetector,
    account_of,
    parse_advisory,
    subscribe_advisories,
)
from lattice.auth.keys import host_id_of, new_key
from lattice.auth.store import AuthStore, Issued, read_credentials
from lattice.clock import ManualClock
from lattice.localnats import NatsServer
from tests.helpers import eventually, serving

LATTICE = "adv"
H1, H2 = "host-one", "host-two"


# ---------------------------------------------------------------- records

def advisory(kind: str = "connect", *, user: str = "", cid: int = 7, server: str = "NSRV1",
             start: str = "2026-12-02T06:58:09.516520815Z", tags: list[str] | None = None,
             **extra: Any) -> bytes:
    """An advisory as nats-server 2.15 sends it (fields we ignore included)."""
    client = {"start": start, "host": "127.0.0.1", "id": cid, "acc": "ABR27", "user": user,
              "name": "hostproc", "lang": "python3", "ver": "2.16.0", "jwt": "eyJ...",
              "issuer_key": "ABR27", "kind": "Client", "client_type": "nats",
              "tags": tags if tags is not None else ["vinculum-role:host"]}
    body: dict[str, Any] = {
        "type": f"io.nats.server.advisory.v1.client_{kind}", "id": "mukDbz9",
        "timestamp": start,
        "server": {"name": "vinculum-1", "host": "127.0.0.1", "id": server, "ver": "2.15.1",
                   "feature_flags": {"x": True}, "jetstream": True, "seq": 15},
        "client": client, **extra}
    if kind == "disconnect":
        body.update(sent={"msgs": 0, "bytes": 0}, reason="Client Closed")
    return json.dumps(body).encode()


def test_a_connect_and_a_disconnect_parse_to_their_records_and_name_the_host() -> None:
    user = new_key("user").public_key
    up = parse_advisory(advisory("connect", user=user))
    down = parse_advisory(advisory("disconnect", user=user))
    assert isinstance(up, ClientConnect) and isinstance(down, ClientDisconnect)
    assert up.client.host_id == host_id_of(user) == down.client.host_id
    assert (up.server.id, up.client.id, down.reason) == ("NSRV1", 7, "Client Closed")


@pytest.mark.parametrize("data", [
    b"", b"not json", b"[]", b'{"type": "io.nats.server.advisory.v1.client_connect"}',
    advisory("connect").replace(b"client_connect", b"account_connections"),
    advisory("connect").replace(b'"id": 7', b'"id": "seven"'),
    advisory("connect").replace(b'"start": "2026', b'"start": "yesterday'),
    advisory("connect", padding="x" * MAX_ADVISORY_BYTES),
])
def test_malformed_or_oversized_advisories_are_dropped_without_raising(data: bytes) -> None:
    assert parse_advisory(data) is None


@pytest.mark.parametrize("tags", [["vinculum-role:agent"], ["vinculum-role:admin"],
                                  ["vinculum-role:apps"], ["vinculum-role:monitor"]])
def test_users_of_other_roles_are_not_hosts(tags: list[str]) -> None:
    event = parse_advisory(advisory("disconnect", user=new_key("user").public_key,
                                    tags=tags))
    assert event is not None and event.client.host_id is None
    detector = GoneDetector(0.0, clock=ManualClock())
    detector.observe(event)
    assert detector.due() == [] and detector.next_deadline() is None


def test_a_user_field_that_is_not_a_user_key_names_no_host() -> None:
    for user in ("", "UNOTAKEY", new_key("account").public_key):
        event = parse_advisory(advisory("disconnect", user=user))
        assert event is not None and event.client.host_id is None


# ---------------------------------------------------------------- the detector

def test_a_host_is_gone_only_once_the_grace_has_passed() -> None:
    clock = ManualClock()
    d = GoneDetector(0.25, clock=clock)
    d.connected("h", server="A", client_id=1, start=10.0)
    assert d.next_deadline() is None
    clock.advance(5)
    d.disconnected("h", server="A", client_id=1, start=10.0)
    assert d.next_deadline() == pytest.approx(clock.now + 0.25)
    assert d.pending() == {"h"}
    clock.advance(0.24)
    assert d.due() == []
    clock.advance(0.01)
    assert d.due() == ["h"]
    assert d.due() == [] and d.next_deadline() is None  # reported once


def test_a_reconnect_within_the_grace_on_another_server_cancels() -> None:
    clock = ManualClock()
    d = GoneDetector(0.25, clock=clock)
    d.connected("h", server="A", client_id=1, start=10.0)
    d.disconnected("h", server="A", client_id=1, start=10.0)
    clock.advance(0.2)
    d.connected("h", server="B", client_id=9, start=10.3)
    clock.advance(10)
    assert d.due() == [] and d.pending() == set()
    d.disconnected("h", server="B", client_id=9, start=10.3)  # and later it dies for real
    clock.advance(0.25)
    assert d.due() == ["h"]


def test_the_dead_servers_disconnect_arriving_after_the_new_connect_is_ignored() -> None:
    clock = ManualClock()
    d = GoneDetector(0.25, clock=clock)
    d.connected("h", server="A", client_id=1, start=10.0)
    d.connected("h", server="B", client_id=4, start=12.0)   # B's CONNECT first
    d.disconnected("h", server="A", client_id=1, start=10.0)  # then A's DISCONNECT
    clock.advance(1)
    assert d.due() == [] and d.next_deadline() is None


def test_a_late_connect_of_an_old_connection_does_not_resurrect_a_closed_host() -> None:
    clock = ManualClock()
    d = GoneDetector(0.25, clock=clock)
    d.connected("h", server="B", client_id=4, start=12.0)
    d.disconnected("h", server="B", client_id=4, start=12.0)
    d.connected("h", server="A", client_id=1, start=10.0)  # A's CONNECT, very late
    clock.advance(0.25)
    assert d.due() == ["h"]
    d.disconnected("h", server="A", client_id=1, start=10.0)  # after the report
    clock.advance(1)
    assert d.due() == []  # the tombstone keeps it from being reported twice
    d.connected("h", server="A", client_id=2, start=20.0)  # really back
    d.disconnected("h", server="A", client_id=2, start=20.0)
    clock.advance(0.25)
    assert d.due() == ["h"]


def test_a_disconnect_never_seen_connecting_still_counts() -> None:
    clock = ManualClock()
    d = GoneDetector(0.1, clock=clock)
    d.disconnected("h", server="A", client_id=3, start=1.0)  # agent started after it
    clock.advance(0.1)
    assert d.due() == ["h"]


def test_many_hosts_are_reported_in_the_order_they_left() -> None:
    clock = ManualClock()
    d = GoneDetector(0.25, clock=clock)
    hosts = [f"h{i:03}" for i in range(200)]
    for i, h in enumerate(hosts):
        d.connected(h, server=f"S{i % 3}", client_id=i, start=float(i))
    leaving = hosts[::-1][:150]  # reverse order: not alphabetical
    for h in leaving:
        clock.advance(0.001)
        d.disconnected(h, server=f"S{hosts.index(h) % 3}", client_id=hosts.index(h),
                       start=float(hosts.index(h)))
    for h in leaving[100:]:  # fifty come back in time
        d.connected(h, server="S9", client_id=1000 + hosts.index(h), start=500.0)
    assert d.next_deadline() == pytest.approx(clock.now - 0.149 + 0.25)
    clock.advance(0.25)
    assert d.due() == leaving[:100]
    assert d.next_deadline() is None


def test_grace_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="grace"):
        GoneDetector(-1)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple[str, str, int, float]], bool]:
    """One host's connections over servers, in an arrival order that keeps each server's
    own events in order but interleaves servers arbitrarily; some servers die (no
    DISCONNECT); the last connection stays open or closes (the bool)."""
    n = draw(st.integers(1, 5))
    letters = [draw(st.sampled_from("ABC")) for _ in range(n)]
    final_closed = draw(st.booleans())
    epoch = dict.fromkeys("ABC", 0)  # a server that died comes back with a new id
    per_server: dict[str, list[tuple[str, str, int, float]]] = {}
    for i, letter in enumerate(letters):
        srv = f"{letter}{epoch[letter]}"
        per_server.setdefault(srv, []).append(("connect", srv, i, float(i)))
        if i == n - 1:
            if final_closed:
                per_server[srv].append(("disconnect", srv, i, float(i)))
        elif draw(st.booleans()):
            per_server[srv].append(("disconnect", srv, i, float(i)))
        else:
            epoch[letter] += 1  # its server died: no DISCONNECT
    queues = {k: list(v) for k, v in per_server.items()}
    order: list[tuple[str, str, int, float]] = []
    while queues:
        srv = draw(st.sampled_from(sorted(queues)))
        order.append(queues[srv].pop(0))
        if not queues[srv]:
            del queues[srv]
    return order, final_closed


@settings(max_examples=300, deadline=None)
@given(histories())
def test_whatever_the_arrival_order_only_a_closed_last_connection_is_gone(
        history: tuple[list[tuple[str, str, int, float]], bool]) -> None:
    events, final_closed = history
    clock = ManualClock()
    d = GoneDetector(0.25, clock=clock)
    for kind, srv, cid, start in events:
        feed = d.connected if kind == "connect" else d.disconnected
        feed("h", server=srv, client_id=cid, start=start)
        clock.advance(0.001)
    clock.advance(0.25)
    assert d.due() == (["h"] if final_closed else [])


# ---------------------------------------------------------------- a real server

HOST_PROCESS = """
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1].split(","), user_credentials=sys.argv[2],
                            name=sys.argv[3], dont_randomize=True, reconnect_time_wait=0.05,
                            max_reconnect_attempts=100)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await nc.close()
asyncio.run(main())
"""


class Secured:
    """An operator-mode server with lattice ``adv``'s keys."""

    def __init__(self, tmp: Path) -> None:
        self.store = AuthStore(tmp / "state", LATTICE).initialise()
        conf = tmp / "server.conf"
        conf.write_text(self.store.server_config(tmp / "jwt"))
        self.server = NatsServer(data_dir=tmp / "nats", extra_args=["-c", str(conf)])

    async def connect(self, issued: Issued | Path, errors: list[Exception]) -> Client:
        async def on_error(exc: Exception) -> None:
            errors.append(exc)
        path = issued.path if isinstance(issued, Issued) else issued
        return await nats.connect(self.server.url, user_credentials=str(path),
                                  error_cb=on_error, allow_reconnect=False,
                                  connect_timeout=5)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    sec = Secured(tmp_path)
    with serving(sec.server):
        yield sec


def spawn_host(urls: list[str], issued: Issued) -> subprocess.Popen[str]:
    """A process that holds one connection with ``issued``'s credentials (first of
    ``urls``, reconnecting to the next) until its stdin closes or it is killed."""
    return subprocess.Popen(
        [sys.executable, "-c", HOST_PROCESS, ",".join(urls), str(issued.path), issued.name],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def reap(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:  # only what this test started, by pid
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


async def test_a_killed_host_is_seen_disconnected_within_ms_and_gone_after_the_grace(
        secured: Secured) -> None:
    monitor = secured.store.issue_monitor()
    errors: list[Exception] = []
    nc = await secured.connect(monitor, errors)
    arrivals: list[tuple[float, ClientEvent]] = []
    detector = GoneDetector(0.25)

    def on_event(event: ClientEvent) -> None:
        arrivals.append((time.monotonic(), event))
        detector.observe(event)

    await subscribe_advisories(nc, secured.store.account.public_key, on_event)
    await nc.flush()
    kills = 10
    hosts = [secured.store.issue("host", f"host-{i}") for i in range(kills)]
    procs = [spawn_host([secured.server.url], h) for h in hosts]
    try:
        def connected() -> set[str | None]:
            return {e.client.host_id for _, e in arrivals if isinstance(e, ClientConnect)}
        await eventually(lambda: connected() >= {h.host_id for h in hosts}, timeout=60,
                         message="every host process connected")
        latencies: list[float] = []
        for host, proc in zip(hosts, procs, strict=True):
            def down(host_id: str = host.host_id) -> float | None:
                return next((t for t, e in arrivals if isinstance(e, ClientDisconnect)
                             and e.client.host_id == host_id), None)
            killed_at = time.monotonic()
            os.kill(proc.pid, signal.SIGKILL)
            arrived = await eventually(down, timeout=10, interval=0.001,
                                       message=f"DISCONNECT of {host.name}")
            latencies.append(arrived - killed_at)
            assert host.host_id in detector.pending()
            gone = await eventually(detector.due, timeout=5, interval=0.01)
            assert gone == [host.host_id]
        p50 = statistics.median(latencies)
        print(f"kill -9 -> DISCONNECT advisory: p50 {p50 * 1000:.1f} ms, "
              f"max {max(latencies) * 1000:.1f} ms over {kills}")
        assert p50 < 0.5, latencies
        assert errors == []
        reasons = {e.reason for _, e in arrivals if isinstance(e, ClientDisconnect)}
        assert reasons and all(reasons), reasons
    finally:
        reap(procs)
        await nc.close()


async def test_the_monitor_sees_only_its_lattices_advisories_and_publishes_nothing(
        secured: Secured) -> None:
    other = AuthStore(secured.store.state_dir, "other").initialise()  # same operator
    monitor = secured.store.issue_monitor()
    errors: list[Exception] = []
    nc = await secured.connect(monitor, errors)
    got: list[str] = []

    async def cb(msg: Any) -> None:
        got.append(msg.subject)

    try:
        await nc.subscribe(f"$SYS.ACCOUNT.{other.account.public_key}.CONNECT", cb=cb)
        await nc.subscribe("$SYS.>", cb=cb)
        await nc.publish("$SYS.REQ.SERVER.PING", b"")
        await nc.publish("lattice.adv.ctl.ping", b"")
        await nc.flush()
        await eventually(lambda: len(errors) >= 4, timeout=5, message="four refusals")
        assert all("permissions violation" in str(e) for e in errors), errors
        assert got == []
    finally:
        await nc.close()


def test_the_lattice_account_is_read_from_the_agents_credentials(tmp_path: Path) -> None:
    store = AuthStore(tmp_path, LATTICE).initialise()
    agent = read_credentials(store.issue("agent", "agent").path)
    monitor = read_credentials(store.issue_monitor().path)
    assert account_of(agent) == store.account.public_key
    assert account_of(monitor) == store.system_account.public_key != account_of(agent)
