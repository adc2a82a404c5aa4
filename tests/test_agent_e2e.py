"""End to end: a real nats-server, real host processes, a real git repo, the real agent.

Each test is one acceptance criterion of the reconciler issue (convergence, surgical
changes, drift, placement, refused revisions; failover is in test_agent_e2e_failover.py,
repair by the periodic resync alone in test_agent_e2e_resync.py). Nothing is mocked; the
tests wait on conditions with deadlines (pings, events, notes), never on sleeps.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import yaml

from gitsync.status import read_note, read_status
from lattice.protocol import (
    ANN_MANAGED_BY,
    CommandAck,
    EventType,
    HostInventory,
    StartActorCommand,
    StopActorCommand,
    Subjects,
    SyncNudge,
    encode,
)
from lattice.status import Phase
from tests.helpers import eventually
from tests.lattice_e2e import (
    ACTOR,
    OTHER_ACTOR,
    EventLog,
    Lattice,
    count_hosts,
    lat,
    repo,
    settled,
    three_hosts,
    where,
)

__all__ = ["lat", "repo"]  # fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DEPLOYMENT = {
    "kind": "Deployment",
    "metadata": {"name": "amazing-deployment", "labels": {"app": "amazesauce-the-sequel"}},
    "spec": {
        "actors": [{"id": ACTOR}],
        "providers": [
            {"id": "wascc:messaging", "binding_name": "default", "vendor_id": "nats",
             "affinity_rules": []},
            {"id": "iot:ledcontroller", "binding_name": "default", "vendor_id": "wascc",
             "affinity_rules": ["leds=12"]},
        ],
    },
}
BINDINGS = {
    "kind": "BindingSet",
    "metadata": {"name": "amazing-bindings", "labels": {"app": "amazesauce-the-sequel"}},
    "spec": {"bindings": [{
        "capability_id": "wascc:messaging", "binding": "default", "actor": ACTOR,
        "vendor_id": "nats",
        "values": {"SUBSCRIPTION": "foo.bar.baz", "VALUE4": "${ENV_VAL4:FOURTYTWO}"},
    }]},
}


def _instances(invs: dict[str, HostInventory]) -> dict[str, tuple[str, object]]:
    """What runs where, down to instance ids: actors by instance id, providers by
    capability (host and instance id), bindings by key (host and values)."""
    out: dict[str, tuple[str, object]] = {}
    for hid, inv in invs.items():
        out |= {f"actor {a.instance_id}": (hid, a.actor_id) for a in inv.actors}
        out |= {f"provider {p.capability_id}/{p.binding_name}": (hid, p.instance_id)
                for p in inv.providers}
        out |= {f"binding {b.actor_id}/{b.capability_id}/{b.binding_name}":
                (hid, sorted(b.values.items())) for b in inv.bindings}
    return out


def _changes(events: EventLog) -> dict[str, int]:
    """Counts of the events that change what runs (host lifecycle and heartbeats aside)."""
    return {k: v for k, v in events.count().items() if not k.startswith("host_")}


async def test_feature_request_converges_and_changes_are_surgical(lat: Lattice) -> None:
    await three_hosts(lat)
    sha = lat.commit({"deployments/amazing-deployment.yaml": DEPLOYMENT,
                      "bindingsets/amazing-bindings.yaml": BINDINGS}, "deploy")
    agent = lat.agent()
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=30,
                     message=lambda: f"note on {sha[:8]} says Synced\n{agent.log()[-3000:]}")
    invs = await settled(lat)
    assert len(where(invs, actor=ACTOR)) == 1
    assert len(where(invs, provider="wascc:messaging")) == 1
    assert where(invs, provider="iot:ledcontroller") == ["pi"]
    msg_host = next(i for i in invs.values()
                    if any(p.capability_id == "wascc:messaging" for p in i.providers))
    assert [(b.actor_id, b.values["VALUE4"]) for b in msg_host.bindings] == [
        (ACTOR, "${ENV_VAL4:FOURTYTWO}")]
    status = await lat.status_of(sha, Phase.SYNCED)
    dep = status.deployments["amazing-deployment"]
    assert (str(dep.actors), str(dep.providers)) == ("1/1", "2/2")
    assert str(status.bindingsets["amazing-bindings"].bindings) == "1/1"
    actor_instance = [a.instance_id for i in invs.values() for a in i.actors]
    before = _instances(invs)
    led = "provider iot:ledcontroller/default"
    kv = "provider wascc:keyvalue/default"

    # same name, different providers: led controller out, a keyvalue provider in
    changed = {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "providers": [
        DEPLOYMENT["spec"]["providers"][0],  # type: ignore[index]
        {"id": "wascc:keyvalue", "binding_name": "default", "vendor_id": "redis"},
    ]}}
    async with EventLog(lat.nc, lat.lattice) as events:
        sha2 = lat.commit({"deployments/amazing-deployment.yaml": changed}, "swap provider")
        await eventually(lambda: lat.note_phase(sha2, Phase.SYNCED), timeout=30,
                         message="second revision Synced")
        invs2 = await settled(lat)  # every event the change caused has arrived
        assert where(invs2, provider="iot:ledcontroller") == []
        assert len(where(invs2, provider="wascc:keyvalue")) == 1
        assert [a.instance_id for i in invs2.values() for a in i.actors] == actor_instance
        assert where(invs2, provider="wascc:messaging") == where(invs, provider="wascc:messaging")
        after = _instances(invs2)
        # nothing else touched: same actor, provider and binding instances on the same hosts
        assert {k: v for k, v in after.items() if k != kv} == {
            k: v for k, v in before.items() if k != led}
        assert _changes(events) == {"provider_stopped": 1, "provider_started": 1}, events.seen
        [(_, stopped)] = events.of(EventType.PROVIDER_STOPPED)
        [(_, started)] = events.of(EventType.PROVIDER_STARTED)
        assert (stopped.data["capability_id"], stopped.data["instance_id"]) == (
            "iot:ledcontroller", before[led][1])
        assert started.data["capability_id"] == "wascc:keyvalue"

    # revert: what the change added is stopped, what it removed comes back
    async with EventLog(lat.nc, lat.lattice) as events:
        lat.repo.git.revert("--no-edit", sha2)
        sha3 = lat.repo.head.commit.hexsha
        await eventually(lambda: lat.note_phase(sha3, Phase.SYNCED), timeout=30,
                         message="revert Synced")
        invs3 = await settled(lat)
        assert where(invs3, provider="wascc:keyvalue") == []
        assert where(invs3, provider="iot:ledcontroller") == ["pi"]
        assert {k: v for k, v in _instances(invs3).items() if k != led} == {
            k: v for k, v in after.items() if k != kv}
        assert _changes(events) == {"provider_stopped": 1, "provider_started": 1}, events.seen


async def test_drift_is_corrected_and_unowned_is_left_alone(lat: Lattice) -> None:
    await three_hosts(lat)
    sha = lat.commit({"deployments/d.yaml": {
        "kind": "Deployment", "metadata": {"name": "drift"},
        "spec": {"actors": [{"id": ACTOR}]}}}, "deploy")
    lat.agent(resync=1.0)
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=30, message="Synced")
    invs = await lat.inventories()
    [(host_id, inst)] = [(h, a) for h, i in invs.items() for a in i.actors]
    subjects = Subjects(lat.lattice)
    # someone starts an actor by hand: unowned, must be left alone
    other_host = next(h for h in invs if h != host_id)
    reply = await lat.nc.request(subjects.host_command(other_host, "actor.start"),
                                 encode(StartActorCommand(actor_id=OTHER_ACTOR)), timeout=5)
    assert CommandAck.model_validate_json(reply.data).accepted
    # someone stops the owned actor by hand: the agent restarts it
    reply = await lat.nc.request(subjects.host_command(host_id, "actor.stop"),
                                 encode(StopActorCommand(actor_id=ACTOR,
                                                         instance_id=inst.instance_id)),
                                 timeout=5)
    assert CommandAck.model_validate_json(reply.data).accepted

    async def restarted() -> bool:
        now = await lat.inventories()
        return len(where(now, actor=ACTOR)) == 1 and len(where(now, actor=OTHER_ACTOR)) == 1

    await eventually(restarted, timeout=15, message="owned actor restarted, unowned kept")
    now = await lat.inventories()
    [mine] = [a for i in now.values() for a in i.actors if a.actor_id == ACTOR]
    assert mine.instance_id != inst.instance_id and mine.annotations[ANN_MANAGED_BY]

    async def shows_unmanaged() -> bool:
        st = await asyncio.to_thread(read_status, lat.repo)
        return st is not None and any(u.entity == OTHER_ACTOR for u in st.summary.unmanaged)

    await eventually(shows_unmanaged, timeout=15, message="status lists the unowned actor")


async def test_degraded_with_reasons_then_placed_when_a_host_joins(lat: Lattice) -> None:
    lat.pool.spawn(labels={"zone": "a"}, name="vm1")
    lat.pool.spawn(labels={"zone": "b"}, name="vm2")
    await eventually(lambda: count_hosts(lat, 2), timeout=20, message="2 hosts")
    sha = lat.commit({"deployments/d.yaml": {
        "kind": "Deployment", "metadata": {"name": "leds"},
        "spec": {"providers": [{"id": "iot:ledcontroller", "vendor_id": "wascc",
                                "affinity_rules": ["leds=12"]}]}}}, "deploy")
    lat.agent()
    await eventually(lambda: lat.note_phase(sha, Phase.DEGRADED), timeout=30,
                     message="Degraded")
    note = await asyncio.to_thread(read_note, lat.repo, sha)
    assert note is not None
    assert any("no host satisfies leds=12" in e and "label leds missing" in e
               for e in note.errors), note.errors
    async with EventLog(lat.nc, lat.lattice) as events:
        lat.pool.spawn(labels={"leds": "12"}, name="pi")
        # the clock starts when the host is up and says so, not at process spawn
        joined, hello = await events.first(EventType.HOST_STARTED, name="pi", timeout=20)
        placed, started = await events.first(EventType.PROVIDER_STARTED, since=joined,
                                             capability_id="iot:ledcontroller")
        assert started.data["host_id"] == hello.data["host_id"]
        print(f"placement {placed - joined:.2f}s after host_started")
        assert placed - joined < 2.0, f"placed {placed - joined:.2f}s after the host joined"
    assert where(await settled(lat), provider="iot:ledcontroller") == ["pi"]
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=15, message="Synced")


async def test_an_invalid_revision_is_refused_and_the_last_good_stays_in_force(
        lat: Lattice) -> None:
    await three_hosts(lat)
    good = {"kind": "Deployment", "metadata": {"name": "kept"},
            "spec": {"actors": [{"id": ACTOR, "replicas": 2}],
                     "providers": [{"id": "wascc:messaging", "vendor_id": "nats"}]}}
    sha = lat.commit({"deployments/d.yaml": good}, "deploy")
    agent = lat.agent()
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=30, message="Synced")
    await lat.status_of(sha, Phase.SYNCED)
    before = _instances(await settled(lat))
    bad = {**good, "spec": {**good["spec"], "actors": [{"id": ACTOR, "replicas": "many"}]}}
    text = yaml.safe_dump(bad, sort_keys=False).splitlines()
    line = next(n for n, t in enumerate(text, 1) if "replicas: many" in t)
    async with EventLog(lat.nc, lat.lattice) as events:
        sha2 = lat.commit({"deployments/d.yaml": bad}, "typo")
        await eventually(lambda: lat.note_phase(sha2, Phase.INVALID), timeout=30,
                         message=lambda: f"note on {sha2[:8]} says Invalid\n{agent.log()[-2000:]}")
        note = await asyncio.to_thread(read_note, lat.repo, sha2)
        assert note is not None
        assert any(e.startswith(f"deployments/d.yaml:{line}: spec.actors[0].replicas")
                   for e in note.errors), note.errors

        async def refused() -> bool:
            st = await asyncio.to_thread(read_status, lat.repo)
            return st is not None and (
                st.summary.phase, st.summary.attempted_revision,
                st.summary.applied_revision) == (Phase.INVALID, sha2, sha)

        await eventually(refused, timeout=15, message="status: refused, last good in force")
        st = await asyncio.to_thread(read_status, lat.repo)
        assert st is not None
        assert st.summary.message == (
            f"revision {sha2[:8]} refused; {sha[:8]} stays in force"), st.summary.message
        assert any(f"deployments/d.yaml:{line}:" in e for e in st.summary.errors)
        # the lattice keeps running what it ran: the same instances, nothing started or stopped
        assert _instances(await settled(lat)) == before
        assert _changes(events) == {}, events.seen
    assert await lat.note_phase(sha, Phase.SYNCED)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
async def test_a_converged_agent_is_idle(lat: Lattice) -> None:
    """Once Synced, a reconcile pass finds nothing to do: driven through several passes
    (new revisions that change nothing, each announced by a nudge and awaited by its
    Synced note) the agent sends no command, the lattice sees no start or stop, and the
    CPU the agent burns stays within a small budget per pass. The pass count, not a
    wall-clock window, bounds the test. (That a flight deadline in the past does not wake
    the loop, the spin this test once caught, is the executor's next_retry_in after
    prune, tested in test_executor.py.)"""
    await three_hosts(lat)
    sha = lat.commit({"deployments/d.yaml": {
        "kind": "Deployment", "metadata": {"name": "calm"},
        "spec": {"actors": [{"id": ACTOR, "replicas": 3}]}}}, "deploy")
    agent = lat.agent(resync=1.0)
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=30,
                     message=lambda: f"Synced\n{agent.log()[-3000:]}")
    before = _instances(await settled(lat))
    sent, cpu = agent.commands_sent(), _cpu_seconds(agent.pid)
    assert sent == 3, agent.log()[-2000:]  # the three replicas, and nothing else so far
    passes = 5
    async with EventLog(lat.nc, lat.lattice) as events:
        for n in range(passes):
            rev = lat.repo.index.commit(f"nothing changes ({n})").hexsha  # same tree
            await lat.nc.publish(Subjects(lat.lattice).nudge,
                                 encode(SyncNudge(reason="test", revision=rev)))
            await eventually(lambda rev=rev: lat.note_phase(rev, Phase.SYNCED), timeout=30,
                             message=lambda n=n, rev=rev: f"pass {n}: {rev[:8]} Synced\n"
                                     f"{agent.log()[-2000:]}")
        after = _instances(await settled(lat))
        assert _changes(events) == {}, events.seen
    assert after == before
    assert agent.commands_sent() == sent, agent.log()[-2000:]
    used = _cpu_seconds(agent.pid) - cpu
    print(f"agent used {used:.2f} CPU s over {passes} idle passes")
    assert used < 0.2 * passes, f"agent used {used:.2f} CPU s for {passes} passes that did nothing"
