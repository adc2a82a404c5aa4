"""Real ``lattice-host`` processes on a real nats-server: joining, heartbeats, signals,
a server restart, bad input, and binding secrets that must never leave the host."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from nats.aio.client import Client

from lattice.ids import random_actor_id
from lattice.localnats import NatsServer, free_port
from lattice.protocol import (
    CommandOp,
    EventType,
    HostInventory,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
)
from tests.helpers import eventually
from tests.hostproc import EventRecorder, HostPool, command, ping

BUILTINS = {"hostcore.os", "hostcore.arch", "hostcore.python"}


async def started(bus: EventRecorder, name: str, *, timeout: float = 20.0) -> HostInventory:
    """The inventory a host named ``name`` announced in ``host_started``."""
    [event] = (await bus.wait_for(EventType.HOST_STARTED, timeout=timeout,
                                  where=lambda d: d["name"] == name))[:1]
    return HostInventory.model_validate(event.data)


async def test_host_joins_answers_ping_heartbeats_and_survives_bad_input(
    nats_server: NatsServer, nc: Client, lattice_id: str, tmp_path: Path
) -> None:
    async with EventRecorder(nc, lattice_id) as bus:
        with HostPool(nats_server.url, lattice_id, log_dir=tmp_path) as pool:
            t0 = time.monotonic()
            proc = pool.spawn(labels={"leds": "12"}, name="pi",
                              env={"LATTICE_LABEL_ZONE": "eu-1"})
            announced = await started(bus, "pi")
            # visible to a ping within 1 s of announcing itself
            [inv] = [i for i in await ping(nc, lattice_id, timeout=1.0, expect=1)
                     if i.host_id == announced.host_id]
            joined_after = time.monotonic() - t0
            assert inv.labels["leds"] == "12" and inv.labels["zone"] == "eu-1"
            assert set(inv.labels) >= BUILTINS and inv.name == "pi"
            assert inv.heartbeat_s == 0.5 and inv.actors == [] and inv.providers == []

            beats = await bus.wait_for(EventType.HOST_HEARTBEAT, host_id=inv.host_id,
                                       timeout=0.5 + 1.0)  # its interval, + slack for load
            assert HostInventory.model_validate(beats[0].data).labels == inv.labels

            ack = await command(nc, lattice_id, inv.host_id, CommandOp.ACTOR_START,
                                b'{"actor_id": "MB', timeout=5)
            assert not ack.accepted and ack.reason.startswith("actor.start: malformed JSON")
            assert [i.host_id for i in await ping(nc, lattice_id, timeout=5, expect=1)] == [
                inv.host_id
            ]
        assert proc.returncode == 0
        assert joined_after < 5, f"host took {joined_after:.1f}s from spawn to ping"  # 0.4 s idle


async def test_sigterm_and_sigint_stop_actors_then_the_host(
    nats_server: NatsServer, nc: Client, lattice_id: str, tmp_path: Path
) -> None:
    async with EventRecorder(nc, lattice_id) as bus:
        with HostPool(nats_server.url, lattice_id, log_dir=tmp_path) as pool:
            procs = {sig: pool.spawn(labels={}, name=f"h-{sig.name}")
                     for sig in (signal.SIGTERM, signal.SIGINT)}
            ids = {sig: (await started(bus, f"h-{sig.name}")).host_id for sig in procs}
            for host_id in ids.values():
                for replica in ("0", "1"):
                    ack = await command(
                        nc, lattice_id, host_id, CommandOp.ACTOR_START,
                        StartActorCommand(actor_id=random_actor_id(),
                                   annotations={"vinculum.io/replica": replica}),
                    )
                    assert ack.accepted and ack.changed, ack.reason
                await bus.wait_for(EventType.ACTOR_STARTED, host_id=host_id, count=2)

            signalled = time.monotonic()
            for sig, proc in procs.items():
                proc.signal(sig)
            for sig, proc in procs.items():
                code = await asyncio.to_thread(proc.wait, 5.0 + 5.0)
                assert code == 0, f"{sig.name}: exit {code}; log:\n{proc.log()}"
            took = time.monotonic() - signalled
            for sig, host_id in ids.items():
                await bus.wait_for(EventType.HOST_STOPPED, host_id=host_id)
                assert bus.types(host_id=host_id)[-3:] == [
                    "actor_stopped", "actor_stopped", "host_stopped"
                ], sig.name
            assert took < 5.0, f"hosts took {took:.1f}s to stop"  # 0.07 s idle


async def test_host_is_back_in_a_ping_after_nats_restarts(
    nats_server: NatsServer, nc: Client, lattice_id: str, tmp_path: Path
) -> None:
    async with EventRecorder(nc, lattice_id) as bus:
        with HostPool(nats_server.url, lattice_id, log_dir=tmp_path) as pool:
            proc = pool.spawn(labels={"leds": "12"}, name="phoenix")
            host_id = (await started(bus, "phoenix")).host_id
            await asyncio.to_thread(nats_server.restart)
            restarted = time.monotonic()

            async def seen() -> str | None:
                if not nc.is_connected:
                    return None
                try:
                    found = [i.host_id for i in await ping(nc, lattice_id, expect=1)]
                except Exception:
                    return None
                return host_id if host_id in found else None

            await eventually(seen, timeout=5.0, message="host back in a ping")
            assert time.monotonic() - restarted < 5.0  # 0.45 s idle
            await eventually(lambda: "reconnected to NATS; announcing again" in proc.log(),
                             timeout=10, message="host re-announced")
            assert proc.alive()


async def test_resolved_binding_values_never_leave_the_host(
    nats_server: NatsServer, nc: Client, lattice_id: str, tmp_path: Path
) -> None:
    marker = "m4rk3r-7c1e5d0b"
    acks: list[str] = []
    async with EventRecorder(nc, lattice_id) as bus:
        with HostPool(nats_server.url, lattice_id, log_dir=tmp_path) as pool:
            proc = pool.spawn(labels={}, name="vault",
                              env={"VINC_SECRET": marker, "VINC_OTHER": f"x{marker}x"})
            host_id = (await started(bus, "vault")).host_id
            ack = await command(nc, lattice_id, host_id, CommandOp.PROVIDER_START,
                                StartProviderCommand(capability_id="wascc:keyvalue",
                                                     vendor_id="redis"))
            acks.append(ack.model_dump_json())
            values = {"password": "${VINC_SECRET}", "url": "redis://u:${VINC_OTHER}@db"}
            for put in (
                PutBindingCommand(actor_id=random_actor_id(), capability_id="wascc:keyvalue",
                           values=values),
                PutBindingCommand(actor_id=random_actor_id(), capability_id="wascc:keyvalue",
                           values={"a": "${VINC_SECRET}", "b": "${VINC_UNSET}"}),
            ):
                ack = await command(nc, lattice_id, host_id, CommandOp.BINDING_PUT, put)
                acks.append(ack.model_dump_json())
            assert json.loads(acks[1])["accepted"] is True
            assert "VINC_UNSET" in json.loads(acks[2])["reason"]
            [event] = await bus.wait_for(EventType.BINDING_PUT, host_id=host_id)
            assert event.data["values"] == values
            await bus.wait_for(EventType.HOST_HEARTBEAT, host_id=host_id,
                               where=lambda d: bool(d["bindings"]))
            [inv] = await ping(nc, lattice_id, expect=1, timeout=5)
            assert inv.bindings[0].values == values
            inventory_json = inv.model_dump_json()
            proc.terminate()
            assert await asyncio.to_thread(proc.wait, 10.0) == 0
            await bus.wait_for(EventType.HOST_STOPPED, host_id=host_id)
        seen_on_bus = b"".join(bus.raw).decode()
    assert "${VINC_SECRET}" in seen_on_bus and "DEBUG" in proc.log()
    for where, text in [("events", seen_on_bus), ("acks", "".join(acks)),
                        ("inventory", inventory_json), ("host log", proc.log())]:
        assert marker not in text, f"resolved secret leaked into {where}"


def test_bad_options_exit_with_a_usage_error(nats_server: NatsServer, tmp_path: Path) -> None:
    with HostPool(nats_server.url, "t-bad", log_dir=tmp_path) as pool:
        bad_label = pool.spawn(labels={}, name="bad", extra_args=["--label", "leds"])
        builtin = pool.spawn(labels={"hostcore.os": "plan9"}, name="liar")
        bad_lattice = pool.spawn(labels={}, name="dots", extra_args=["--lattice", "a.b"])
        for proc, text in [(bad_label, "expected key=value"), (builtin, "is built in"),
                           (bad_lattice, "invalid lattice id")]:
            try:
                code = proc.wait(20)
            except subprocess.TimeoutExpired:
                code = None
            assert code == 2 and text in proc.log(), proc.log()


async def test_without_nats_a_signal_stops_cleanly_and_a_timeout_fails(tmp_path: Path) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    with HostPool(nowhere, "t-void", log_dir=tmp_path) as pool:
        waiting = pool.spawn(labels={}, name="waiting")
        giving_up = pool.spawn(labels={}, name="quitter", extra_args=["--connect-timeout", "0.5"])
        await eventually(lambda: "connecting to" in waiting.log(), timeout=20,
                         message="host started connecting")
        waiting.terminate()
        assert await asyncio.to_thread(waiting.wait, 10.0) == 0, waiting.log()
        assert await asyncio.to_thread(giving_up.wait, 20.0) == 1, giving_up.log()
        assert "cannot reach NATS" in giving_up.log()


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "hostagent.main", "--help"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and "--nats-url" in out.stdout and "--label" in out.stdout


async def test_a_second_signal_exits_at_once(
    nats_server: NatsServer, nc: Client, lattice_id: str, tmp_path: Path
) -> None:
    """SIGTERM starts the graceful stop; a SIGINT right behind it exits at once with
    128 + its number (two different signals, so the kernel cannot merge them into one).

    The host is stopped (SIGSTOP) while both are sent, so both are pending when it runs
    again: on a loaded machine the test could otherwise be descheduled between the two
    and the host finish its graceful stop (70 ms) before the second arrived."""
    async with EventRecorder(nc, lattice_id) as bus:
        with HostPool(nats_server.url, lattice_id, log_dir=tmp_path) as pool:
            proc = pool.spawn(labels={}, name="impatient")
            await started(bus, "impatient")
            proc.signal(signal.SIGSTOP)
            proc.signal(signal.SIGTERM)
            proc.signal(signal.SIGINT)
            proc.signal(signal.SIGCONT)
            code = await asyncio.to_thread(proc.wait, 10.0)
            # the kernel may hand the two pending signals over in either order
            log = proc.log()
            first = re.search(r"(SIG[A-Z]+) received: stopping", log)
            second = re.search(r"second signal \((SIG[A-Z]+)\): exiting at once", log)
            assert first and second, f"exit {code}; log:\n{log}"
            assert {first[1], second[1]} == {"SIGTERM", "SIGINT"}, log
            assert code == 128 + signal.Signals[second[1]], f"exit {code}; log:\n{log}"
