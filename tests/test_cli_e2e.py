"""End to end: latticectl against a real agent, real hosts, a real nats-server and a real
repository holding the feature request's Deployment and BindingSet (issue 5 acceptance).

`get deployments -w -o wide` runs from before the agent starts until after a host is
killed and the lattice healed: it shows the READY counts reach 1/1 and 2/2 and, after the
kill, a row with the entity moved off the dead host (and the drop in between whenever the
agent's status shows one: its status commits are what -w follows).
"""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from lattice.localnats import NatsServer
from tests.agentproc import spawn_agent, stop_all
from tests.cliutil import clean_env, gitops_repo, interrupt, latticectl, run
from tests.helpers import eventually_sync
from tests.hostproc import HostPool

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SYNCED_ROW = ["amazing-deployment", "1/1", "2/2", "Synced"]


def rows(text: str) -> list[list[str]]:
    """Table rows of amazing-deployment: NAME, ACTORS, PROVIDERS, STATUS (and, from a wide
    table, HOSTS last)."""
    out = []
    for line in text.splitlines():
        cells = line.split()
        if cells and cells[0] == "amazing-deployment":
            out.append([cells[0], *cells[2:5], *cells[6:7]])
    return out


def test_from_empty_lattice_to_synced_and_healed(nats_server: NatsServer, lattice_id: str,
                                                 tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    repo: git.Repo = gitops_repo(tmp_path)
    env.update(LATTICECTL_REPO=str(repo.working_tree_dir), LATTICECTL_NATS_URL=nats_server.url,
               LATTICECTL_LATTICE=lattice_id)
    watch_out = tmp_path / "watch.out"
    watch = latticectl("get", "deployments", "-w", "-o", "wide", env=env, out=watch_out)
    try:
        with HostPool(nats_server.url, lattice_id, log_dir=tmp_path / "hosts") as pool:
            pool.spawn(labels={"leds": "12"}, name="pi")
            pool.spawn(labels={"zone": "a"}, name="vm1")
            pool.spawn(labels={"zone": "b"}, name="vm2")
            eventually_sync(lambda: len(json.loads(run(env, "get", "hosts", "-o", "json")
                                                   .stdout)["items"]) == 3,
                            timeout=30, message="three hosts answer")
            agent = spawn_agent(repo=str(repo.working_tree_dir), nats_url=nats_server.url,
                                lattice=lattice_id, data_dir=tmp_path / "agent")

            def synced() -> bool:
                assert agent.alive(), agent.log()[-3000:]
                return run(env, "status").exit_code == 0

            eventually_sync(synced, timeout=60, message="status exits 0")

            got = run(env, "get", "deployments")
            assert got.exit_code == 0, got.output
            assert got.stdout.splitlines()[0].split() == [
                "NAME", "REVISION", "ACTORS", "PROVIDERS", "STATUS", "AGE"]
            assert rows(got.stdout) == [SYNCED_ROW]
            bs = run(env, "get", "bs").stdout.splitlines()[1].split()
            assert (bs[0], bs[2], bs[3]) == ("amazing-bindings", "1/1", "Synced")
            hosts = json.loads(run(env, "get", "hosts", "-o", "json").stdout)["items"]
            assert sum(h["actors"] for h in hosts) == 1
            assert sum(h["providers"] for h in hosts) == 2
            described = run(env, "describe", "deployment", "amazing-deployment",
                            "--events-for", "0")
            assert described.exit_code == 0, described.output
            assert any(line.split()[:3] == ["provider", "iot:ledcontroller/default", "pi"]
                       for line in described.stdout.splitlines())
            history = run(env, "history").stdout.splitlines()
            assert history[1].split()[2] == "Synced"
            eventually_sync(lambda: any(r[:4] == SYNCED_ROW for r in rows(watch_out.read_text())),
                            timeout=20, message="-w shows Synced")

            # kill a host that runs something, other than the only leds=12 host (when the
            # auctions put everything on pi, there is nothing to heal: the part is skipped)
            by_name = {h["name"]: h for h in hosts}
            victims = [n for n in ("vm1", "vm2")
                       if by_name[n]["actors"] or by_name[n]["providers"]]
            if victims:
                seen = len(rows(watch_out.read_text()))
                next(h for h in pool.hosts if h.name == victims[0]).kill()

                def healed() -> bool:  # Synced again, with nothing left on the victim
                    after = rows(watch_out.read_text())[seen:]
                    return any(r[:4] == SYNCED_ROW and victims[0] not in r[4].split(",")
                               for r in after)

                try:
                    eventually_sync(healed, timeout=40, message="-w shows the heal")
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n--- watch:\n{watch_out.read_text()}\n"
                                         f"--- agent:\n{agent.log()[-3000:]}") from None
                eventually_sync(lambda: run(env, "status").exit_code == 0, timeout=30,
                                message="Synced again")
    finally:
        stop_all()
        code = interrupt(watch)
    assert code == 0, watch_out.read_text()
    assert "Traceback" not in watch_out.read_text()
