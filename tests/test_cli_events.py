"""latticectl events: real hosts' events, live, with --type and --host filters, -f until
Ctrl-C, and the one-line error when NATS cannot be reached."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from nats.aio.client import Client

from cli.reach import cannot_reach
from lattice.localnats import NatsServer
from lattice.protocol import CommandOp, HostInventory, StartActorCommand
from tests.cliutil import CAUSE, interrupt, latticectl, run
from tests.gitrepo import ACTOR
from tests.helpers import eventually
from tests.hostproc import HostPool, command, ping

pytestmark = pytest.mark.timeout(90)


async def two_hosts(nc: Client, pool: HostPool, lattice: str) -> dict[str, str]:
    """pi and vm1 up; name -> host id."""
    pool.spawn(labels={"leds": "12"}, name="pi")
    pool.spawn(labels={"zone": "a"}, name="vm1")
    invs = await eventually(lambda: _two(nc, lattice), timeout=20, message="two hosts")
    return {i.name: i.host_id for i in invs}


async def _two(nc: Client, lattice: str) -> list[HostInventory] | None:
    invs = await ping(nc, lattice, timeout=0.3, expect=2)
    return invs if len(invs) == 2 else None


async def test_type_and_host_filters(nats_server: NatsServer, nc: Client, lattice_id: str,
                                     tmp_path: Path, env: dict[str, str]) -> None:
    with HostPool(nats_server.url, lattice_id, log_dir=tmp_path / "hosts") as pool:
        ids = await two_hosts(nc, pool, lattice_id)
        out = tmp_path / "events.out"
        proc = latticectl("--nats-url", nats_server.url, "--lattice", lattice_id, "events",
                          "--for", "6", "--type", "actor_started", "--host", "pi",
                          env=env, out=out)
        n = 0

        async def seen_pi_start() -> bool:
            nonlocal n
            n += 1  # a new replica each time, so each start is a real start and an event
            for name in ("vm1", "pi"):
                ack = await command(nc, lattice_id, ids[name], CommandOp.ACTOR_START,
                                    StartActorCommand(actor_id=ACTOR, annotations={"n": str(n)}))
                assert ack.accepted
            return "actor_started" in out.read_text()

        await eventually(seen_pi_start, timeout=20, interval=0.3, message="pi's start")
        assert await asyncio.to_thread(proc.wait, 20) == 0
    lines = out.read_text().splitlines()
    assert lines, "no output"
    for line in lines:
        assert "actor_started" in line and ids["pi"][:12] in line, line
    assert ids["vm1"][:12] not in out.read_text()


async def test_follow_until_ctrl_c_as_json(nats_server: NatsServer, nc: Client,
                                          lattice_id: str, tmp_path: Path,
                                          env: dict[str, str]) -> None:
    with HostPool(nats_server.url, lattice_id, log_dir=tmp_path / "hosts") as pool:
        ids = await two_hosts(nc, pool, lattice_id)
        out = tmp_path / "follow.out"
        proc = latticectl("--nats-url", nats_server.url, "--lattice", lattice_id, "events",
                          "-f", "--type", "host_heartbeat", "--host", ids["vm1"][:8],
                          "-o", "json", env=env, out=out)
        try:
            await eventually(lambda: out.read_text().count("\n") >= 2, timeout=20,
                             message="two heartbeats")
        finally:
            code = await asyncio.to_thread(interrupt, proc)
    assert code == 0, out.read_text()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert {e["type"] for e in events} == {"io.vinculum.lattice.host_heartbeat"}
    assert {e["data"]["name"] for e in events} == {"vm1"}


async def test_heartbeats_are_hidden_by_default(nats_server: NatsServer, nc: Client,
                                                lattice_id: str, tmp_path: Path,
                                                env: dict[str, str]) -> None:
    with HostPool(nats_server.url, lattice_id, log_dir=tmp_path / "hosts") as pool:
        await two_hosts(nc, pool, lattice_id)
        result = await asyncio.to_thread(
            run, env, "--nats-url", nats_server.url, "--lattice", lattice_id, "events",
            "--for", "1.5")
    assert result.exit_code == 0, result.output
    assert "host_heartbeat" not in result.output


async def test_a_host_nobody_knows_is_a_warning_then_followed(
        nats_server: NatsServer, nc: Client, lattice_id: str, tmp_path: Path,
        env: dict[str, str]) -> None:
    """--host NAME with no such host: one warning on stderr, and the events of a host of
    that name that starts afterwards are still shown."""
    out = tmp_path / "late.out"
    proc = latticectl("--nats-url", nats_server.url, "--lattice", lattice_id, "events",
                      "-f", "--type", "host_started", "--type", "host_heartbeat",
                      "--host", "late", env=env, out=out)
    try:
        await eventually(lambda: "warning:" in out.read_text(), timeout=20,
                         message="the warning")
        with HostPool(nats_server.url, lattice_id, log_dir=tmp_path / "hosts") as pool:
            pool.spawn(labels={}, name="late")
            await eventually(lambda: out.read_text().count("\n") >= 2, timeout=20,
                             message="an event of late")  # its start, or a heartbeat
    finally:
        code = await asyncio.to_thread(interrupt, proc)
    assert code == 0, out.read_text()
    warning, *events = out.read_text().splitlines()
    assert warning == ("warning: no host named 'late' (or with that id) answered a ping; "
                       "listening for its events anyway")
    assert events and all(" late " in e for e in events), events


def test_unreachable_or_unconfigured_nats(env: dict[str, str]) -> None:
    result = run(env, "--nats-url", "nats://127.0.0.1:1", "events")
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert re.fullmatch(r"Error: cannot reach NATS at nats://127\.0\.0\.1:1 " + CAUSE
                        + r"; is the lattice up\? \(`latticectl up`, or pass --nats-url\)",
                        line), line
    assert line.count("cannot reach NATS") == 1 and line.count("nats://127.0.0.1:1") == 1, line
    unset = run(env, "events", "-f")
    assert unset.exit_code == 2 and "no NATS URL" in unset.stderr


@pytest.mark.parametrize(("exc", "expected"), [
    (ConnectionError("cannot reach NATS at nats://h:1: no answer within 2s"),
     "cannot reach NATS at nats://h:1 (no answer within 2s)"),
    (ConnectionError("no connection within 2s"),
     "cannot reach NATS at nats://h:1 (no connection within 2s)"),
    (TimeoutError(), "cannot reach NATS at nats://h:1 (TimeoutError)"),
])
def test_the_cause_is_said_once(exc: Exception, expected: str) -> None:
    assert cannot_reach("nats://h:1", exc) == expected


def test_a_refused_binding_reads_as_the_binding_and_the_reason() -> None:
    from cli.up_cmd import format_event
    from lattice.protocol import BindingPutFailed, EventType, make_event

    ev = make_event(EventType.BINDING_PUT_FAILED, "NHOST", BindingPutFailed(
        host_id="N" + "H" * 55, actor_id=ACTOR, capability_id="wascc:keyvalue",
        binding_name="default", reason="actor does not claim capability wascc:keyvalue"))
    line = format_event(ev)
    assert "binding_put_failed" in line and f"{ACTOR[:12]} -> wascc:keyvalue/default" in line
    assert line.endswith("(actor does not claim capability wascc:keyvalue)")
