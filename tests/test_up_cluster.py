"""``latticectl up --cluster 3`` and ``up --leaf-of``: a lattice on three routed servers,
then an edge site joined to it, all real processes started through the CLI.

The cluster: the demo deployments of examples/repo reach Synced, ``get servers`` lists the
three servers (each routed to the two others), the hosts are spread over more than one
server (``get hosts -o wide``'s SERVER column), and the buckets ``up`` made have three
replicas. The site: one host on a leaf node, labelled ``zone=edge``, joined with the
``leaf`` role (the hub's streams readable through it, not deletable); moving the echo actor
there with an affinity rule (a commit to the hub's repo) makes it run on that host, and a
request sent on the hub is answered by it across the leaf link. ``down`` on both state dirs
leaves no process of theirs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import git
import nats.errors
import nats.js.errors
import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from lattice import gantry, policy
from lattice.natsutil import NatsOptions, connect, jetstream
from lattice.protocol import Subjects
from tests.helpers import pid_alive

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

T = TypeVar("T")
ECHO = "MAJEM2O2J4G2RZP3EBFQ2F2EMVNEOUNEUURCHJ3Z5JRSJ65UTICCEK25"


def move_echo_to_the_edge(hub_dir: Path) -> None:
    """Commit, in the hub's repository, an affinity rule that puts echo in zone=edge."""
    repo = git.Repo(hub_dir / "repo")
    path = hub_dir / "repo" / "deployments" / "amazing-deployment.yaml"
    text = path.read_text()
    assert text.count(f"    - id: {ECHO}\n") == 1
    path.write_text(text.replace(f"    - id: {ECHO}\n",
                                 f"    - id: {ECHO}\n      affinity_rules: [\"zone=edge\"]\n"))
    repo.index.add([str(path)])
    repo.index.commit("echo runs at the edge", author=git.Actor("t", "t@t"),
                      committer=git.Actor("t", "t@t"))

def _eventually(check: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout:g}s")
        time.sleep(0.2)


class Ctl:
    """latticectl on one state dir, in-process (CliRunner), independent of HOME's config."""

    def __init__(self, tmp: Path, state_dir: Path, lattice: str) -> None:
        self.runner = CliRunner()
        self.env = {"LATTICECTL_CONFIG": str(tmp / "none.yaml")}
        self.base = ["--state-dir", str(state_dir), "--lattice", lattice]

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(cli, [*self.base, *args], env=self.env)

    def ok(self, *args: str) -> str | None:
        result = self(*args)
        return result.output if result.exit_code == 0 else None


def _synced(ctl: Ctl, deployments: set[str]) -> Callable[[], str | None]:
    def check() -> str | None:
        out = ctl.ok("get", "deployments")
        if out is None:
            return None
        rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
        done = all(name in rows and "Synced" in rows[name] for name in deployments)
        return out if done else None
    return check


async def _link_is_least_privilege(site_state: dict[str, object], stream: str) -> None:
    """From the site, through the leaf link: the hub's streams can be read in the
    JetStream domain, but not deleted (the link's role denies it, so nothing answers)."""
    creds = site_state["creds"]
    assert isinstance(creds, dict)
    nc = await connect(NatsOptions(url=str(site_state["nats_url"]), creds_file=creds["admin"],
                                   js_domain=str(site_state["js_domain"])))
    try:
        js = jetstream(nc, timeout=1.0)
        assert (await js.stream_info(stream)).config.name == stream
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError,
                            nats.js.errors.ServiceUnavailableError)):
            await js.delete_stream(stream)
        assert (await js.stream_info(stream)).config.name == stream
    finally:
        await nc.close()


async def _replicas(state: dict[str, object], stream: str) -> int:
    creds = state["creds"]
    assert isinstance(creds, dict)
    nc = await connect(NatsOptions(url=str(state["nats_url"]), creds_file=creds["admin"],
                                   js_domain=str(state["js_domain"])))
    try:
        info = await jetstream(nc).stream_info(stream)
        return int(info.config.num_replicas or 1)
    finally:
        await nc.close()


def test_cluster_of_three_then_a_leaf_site(tmp_path: Path) -> None:
    began = time.monotonic()
    hub_dir, site_dir = tmp_path / "hub", tmp_path / "site"
    hub, site = Ctl(tmp_path, hub_dir, "c3"), Ctl(tmp_path, site_dir, "c3")
    states: list[dict[str, object]] = []
    try:
        up = hub("up", "--detach", "--cluster", "3", "--hosts", "3", "--heartbeat", "0.5")
        assert up.exit_code == 0, up.output
        state = json.loads((hub_dir / "state.json").read_text())
        states.append(state)
        assert state["secure"] is True and state["js_domain"] == "vinculum"
        assert state["replicas"] == 3
        assert len(state["servers"]) == 3 and len(state["leafnode_urls"]) == 3
        assert state["nats_url"].count(",") == 2
        assert Path(state["monitor_creds"]).is_file()
        assert "monitor" not in state["creds"]
        assert sorted(p["role"] for p in state["procs"]) == [
            "agent", "host", "host", "host", "nats-server", "nats-server", "nats-server"]

        out = _eventually(_synced(hub, {"amazing-deployment", "counter"}), timeout=30,
                          what="the demo deployments Synced on the cluster")
        synced_at = time.monotonic() - began

        servers = hub.ok("get", "servers")
        assert servers is not None
        rows = [line.split() for line in servers.splitlines()[1:]]
        assert sorted(r[0] for r in rows) == ["vinculum-n0", "vinculum-n1", "vinculum-n2"]
        assert all(int(r[3]) > 0 for r in rows), servers  # ROUTES: each routed to the others

        hosts = hub.ok("get", "hosts", "-o", "wide")
        assert hosts is not None
        on = {line.split()[-1] for line in hosts.splitlines()[1:]}
        assert len(on) > 1 and on <= {"vinculum-n0", "vinculum-n1", "vinculum-n2"}, hosts
        for stream in (f"OBJ_{gantry.bucket_name('c3')}", f"KV_{policy.bucket_name('c3')}",
                       f"KV_{Subjects('c3').lease_bucket}"):
            assert asyncio.run(_replicas(state, stream)) == 3, stream

        # an edge site: a leaf node joined to the hub, one host labelled zone=edge
        leaf = site("up", "--detach", "--leaf-of", state["leafnode_urls"][1],
                    "--hub-state-dir", str(hub_dir), "--hosts", "1",
                    "--host-label", "0:zone=edge", "--heartbeat", "0.5")
        assert leaf.exit_code == 0, leaf.output
        site_state = json.loads((site_dir / "state.json").read_text())
        states.append(site_state)
        assert [s["role"] for s in site_state["servers"]] == ["leaf"]
        assert sorted(p["role"] for p in site_state["procs"]) == ["host", "nats-server"]
        assert site_state["repo"] == ""
        asyncio.run(_link_is_least_privilege(site_state, f"KV_{policy.bucket_name('c3')}"))

        # the hub's repo moves echo to the edge; a request on the hub reaches it there
        move_echo_to_the_edge(hub_dir)

        def echo_on_edge() -> str | None:
            wide = hub.ok("get", "hosts", "-o", "wide")
            if wide is None:
                return None
            edge = [line.split() for line in wide.splitlines() if "edge-host-0" in line]
            others = [line.split() for line in wide.splitlines()[1:]
                      if "edge-host-0" not in line]
            moved = (edge and edge[0][4] == "1" and edge[0][-1] == "vinculum-leaf-edge"
                     and sum(int(r[4]) for r in others if r[4].isdigit()) == 1)  # counter
            return wide if moved else None

        _eventually(echo_on_edge, timeout=30, what="echo moved to the edge host")
        _eventually(_synced(hub, {"amazing-deployment", "counter"}), timeout=30,
                    what="amazing-deployment Synced again with echo at the edge")
        answer = _eventually(lambda: hub.ok("request", "demo.echo", "hello edge"),
                             timeout=15, what="demo.echo answered from the edge")
        assert answer.strip() == "hello edge"
        print(f"cluster Synced {synced_at:.1f}s after up; whole test "
              f"{time.monotonic() - began:.1f}s; {out.count('Synced')} synced rows")
    finally:
        down_site = site("down") if (site_dir / "state.json").exists() else None
        down_hub = hub("down") if (hub_dir / "state.json").exists() else None
        pids = [int(str(p["pid"])) for s in states for p in s["procs"]]  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert down_hub is not None and down_hub.exit_code == 0, down_hub and down_hub.output
    assert down_site is not None and down_site.exit_code == 0, down_site and down_site.output
    assert "stopped 7 processes" in down_hub.output
    assert "stopped 2 processes" in down_site.output
    assert not [p for p in pids if pid_alive(p)], "processes left after down"
