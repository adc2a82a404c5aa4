"""A leaf-node site finished properly (issue 15): its server links the system account too.

All real processes started through the CLI: a secured hub (``latticectl up``) and a site
(``up --leaf-of``) whose hosts beat only every 10 s, so the agent's heartbeat timeout is
30 s and anything faster is the system account's doing:

* a revocation pushed on the hub (``latticectl host revoke``) reaches the leaf server and
  cuts the site's host off within seconds (without the system link it never arrives);
* the site's advisories reach the agent's monitor on the hub: a ``kill -9``ed site host
  running an actor is seen gone in under 3 s, and the actor is started again on the
  site's other host;
* that other host joined by hand with ``latticectl host creds``: the printed command
  carries ``--js-domain``, so it fetches the actor from gantry through the leaf;
* latticectl on the site's state dir reads JetStream (``trust list``) without flags: the
  domain comes from ``state.json``.

Plus a quick test of how :class:`cli.settings.Settings` takes the domain and replicas
from ``state.json``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.settings import Settings
from lattice.auth.keys import host_id_of
from lattice.auth.store import AuthStore
from lattice.natsflags import NatsFlags
from tests.helpers import pid_alive
from tests.test_up_cluster import Ctl, _eventually, _synced, move_echo_to_the_edge

LATTICE = "leafy"
SITE_HEARTBEAT = 10.0  #: seconds; the agent's heartbeat timeout is three of them


def _wait_dead(pid: int, timeout: float) -> float | None:
    """Seconds until ``pid`` is gone, or None if it still runs after ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if not pid_alive(pid):
            return time.monotonic() - began
        time.sleep(0.02)
    return None


def _host_pids(state: dict[str, object]) -> dict[str, int]:
    """Host name -> pid, from a state.json (each host logs to ``logs/<name>.log``)."""
    procs = state["procs"]
    assert isinstance(procs, list)
    return {Path(p["log"]).stem: int(p["pid"]) for p in procs if p["role"] == "host"}


def _actors_on(ctl: Ctl, name: str) -> int | None:
    """How many actors ``get hosts -o wide`` shows on host ``name``, None if not listed."""
    wide = ctl.ok("get", "hosts", "-o", "wide")
    rows = [line.split() for line in (wide or "").splitlines() if f" {name} " in f" {line} "]
    return int(rows[0][4]) if rows and rows[0][4].isdigit() else None


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_leaf_site_gets_revocations_and_reports_disconnects(tmp_path: Path) -> None:
    hub_dir, site_dir, pi_dir = tmp_path / "hub", tmp_path / "site", tmp_path / "pi"
    pi_dir.mkdir()
    hub, site = Ctl(tmp_path, hub_dir, LATTICE), Ctl(tmp_path, site_dir, LATTICE)
    states: list[dict[str, object]] = []
    pi: subprocess.Popen[bytes] | None = None
    try:
        up = hub("up", "--detach", "--hosts", "2")
        assert up.exit_code == 0, up.output
        hub_state = json.loads((hub_dir / "state.json").read_text())
        states.append(hub_state)
        leaf = site("up", "--detach", "--leaf-of", hub_state["leafnode_urls"][0],
                    "--hub-state-dir", str(hub_dir), "--hosts", "2",
                    "--host-label", "0:zone=edge", "--heartbeat", str(SITE_HEARTBEAT))
        assert leaf.exit_code == 0, leaf.output
        site_state = json.loads((site_dir / "state.json").read_text())
        states.append(site_state)
        assert set(site_state["creds"]) == {"admin", "apps", "edge-host-0", "edge-host-1"}
        assert (site_dir / "creds" / "leaf-system-link.creds").is_file()
        site_hosts = _host_pids(site_state)

        # latticectl on the site reads the hub's JetStream by the domain in state.json
        trust = site("trust", "list")
        assert trust.exit_code == 0, trust.output
        assert trust.output.strip().startswith("A"), trust.output  # up trusts the demo account

        # (a) a revocation pushed on the hub reaches the leaf server
        victim = site_hosts["edge-host-1"]
        revoked = hub("host", "revoke", "edge-host-1")
        assert revoked.exit_code == 0, revoked.output
        cut_in = _wait_dead(victim, 5.0)
        assert cut_in is not None, "the revoked site host still runs 5 s after the revoke"
        assert "revoked" in (site_dir / "logs" / "edge-host-1.log").read_text()

        # echo goes to the edge host; a second edge host joins by `host creds`
        move_echo_to_the_edge(hub_dir)
        _eventually(lambda: _actors_on(hub, "edge-host-0") == 1 or None, timeout=30,
                    what="echo on edge-host-0")
        made = hub("host", "creds", "pi", "-o", str(pi_dir / "pi.creds"), "--label", "zone=edge")
        assert made.exit_code == 0, made.output
        printed = next(line for line in made.output.splitlines()
                       if line.strip().startswith("lattice-host"))
        cmd = shlex.split(printed)
        assert cmd[cmd.index("--js-domain") + 1] == "vinculum", printed
        cmd[0] = str(Path(sys.executable).with_name("lattice-host"))
        cmd[cmd.index("--nats-url") + 1] = str(site_state["nats_url"])  # it joins the leaf
        with open(pi_dir / "pi.log", "wb") as log:
            pi = subprocess.Popen(cmd, cwd=pi_dir, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        _eventually(lambda: _actors_on(hub, "pi") is not None or None, timeout=20,
                    what="pi listed by `get hosts`")

        # (b) kill -9 the edge host: the agent on the hub learns it from the advisory
        gone_id = host_id_of(AuthStore(hub_dir, LATTICE).hosts()["edge-host-0"])
        agent_log = hub_dir / "logs" / "agent.log"
        killed_at = time.monotonic()
        os.kill(site_hosts["edge-host-0"], signal.SIGKILL)
        seen = _eventually(
            lambda: (time.monotonic() - killed_at
                     if f"host {gone_id} closed its connection" in agent_log.read_text()
                     else None),
            timeout=3 * SITE_HEARTBEAT, what="the agent seeing edge-host-0 gone")
        # the replacement runs on pi, which fetched echo from gantry through the leaf
        def echoed() -> str | None:
            out = hub.ok("request", "demo.echo", "hello pi")
            return out if out is not None and out.strip() == "hello pi" else None

        _eventually(echoed, timeout=30, what="demo.echo answered again")
        replaced = time.monotonic() - killed_at
        assert _actors_on(hub, "pi") == 1
        assert "closed its connection" in agent_log.read_text()
        print(f"revoked site host cut off in {cut_in:.2f}s; kill -9 of a site host seen "
              f"by the agent in {seen:.2f}s, echo answering again from pi in "
              f"{replaced:.2f}s (heartbeat timeout {3 * SITE_HEARTBEAT:g}s)")
        assert seen < 3.0, f"the agent took {seen:.2f}s to see a killed site host gone"
        _eventually(_synced(hub, {"amazing-deployment"}), timeout=30,
                    what="amazing-deployment Synced with echo on pi")
    finally:
        if pi is not None:
            pi.send_signal(signal.SIGTERM)
            try:
                pi.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pi.kill()
                pi.wait()
        down_site = site("down") if (site_dir / "state.json").exists() else None
        down_hub = hub("down") if (hub_dir / "state.json").exists() else None
        pids = [int(str(p["pid"])) for s in states for p in s["procs"]]  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert down_hub is not None and down_hub.exit_code == 0, down_hub and down_hub.output
    assert down_site is not None and down_site.exit_code == 0, down_site and down_site.output
    assert not [p for p in pids if pid_alive(p)], "processes left after down"


def _write_state(state_dir: Path, **values: object) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.json").write_text(json.dumps(
        {"nats_url": "nats://127.0.0.1:4999", "lattice": "x", "creds": {}, **values}))


@pytest.mark.parametrize(("state", "flags", "domain", "replicas"), [
    ({"js_domain": "vinculum", "replicas": 3}, NatsFlags(), "vinculum", 3),
    ({}, NatsFlags(), None, 1),  # an up from before the fields
    ({"js_domain": "vinculum", "replicas": 3}, NatsFlags(js_domain="other"), "other", 3),
    # another lattice named by URL: the running up's domain and replicas do not apply
    ({"js_domain": "vinculum", "replicas": 3}, NatsFlags(url="nats://elsewhere:4222"),
     None, 1),
    ({"js_domain": 7, "replicas": "3"}, NatsFlags(), None, 1),  # wrong types ignored
])
def test_settings_take_domain_and_replicas_from_up_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: dict[str, object],
        flags: NatsFlags, domain: str | None, replicas: int) -> None:
    monkeypatch.setenv("LATTICECTL_CONFIG", str(tmp_path / "none.yaml"))
    _write_state(tmp_path / "s", **state)
    settings = Settings.resolve(repo=None, lattice=None, context=None,
                                state_dir=str(tmp_path / "s"), debug=False, nats=flags)
    options = settings.nats()
    assert (options.js_domain, options.js_replicas) == (domain, replicas)


@pytest.mark.parametrize(("state", "domain"), [
    ({"js_domain": "vinculum"}, "vinculum"),
    (None, None),  # keys but no running up: no domain to tell
])
def test_host_creds_prints_the_lattices_domain(
        tmp_path: Path, state: dict[str, object] | None, domain: str | None) -> None:
    AuthStore(tmp_path / "s", LATTICE).initialise()
    if state is not None:
        _write_state(tmp_path / "s", lattice=LATTICE, **state)
    ctl = Ctl(tmp_path, tmp_path / "s", LATTICE)
    made = ctl("host", "creds", "pi", "-o", str(tmp_path / "pi.creds"))
    assert made.exit_code == 0, made.output
    cmd = shlex.split(next(line for line in made.output.splitlines()
                           if line.strip().startswith("lattice-host")))
    found = cmd[cmd.index("--js-domain") + 1] if "--js-domain" in cmd else None
    assert found == domain, cmd
    assert cmd[cmd.index("--creds") + 1] == "pi.creds"
