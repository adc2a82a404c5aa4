"""The pure parts of issue 15's cluster support: how ``up`` spreads hosts over servers,
the rows of ``get servers``, the domain form of JetStream in the roles, and ``--js-domain``.
"""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from cli.servers_cmd import server_row
from cli.stack_nats import ServerRecord, Servers
from lattice.auth import roles
from lattice.natsflags import NatsFlags, nats_options


def _servers(n: int) -> Servers:
    records = [ServerRecord(name=f"n{i}", client_url=f"nats://h:{i}", monitor_url="",
                            leafnode_url=f"nats-leaf://h:{100 + i}", pid=i, log="")
               for i in range(n)]
    return Servers(records, replicas=min(3, n), stop=lambda: None)


@pytest.mark.parametrize(("n", "i", "want"), [
    (1, 0, "nats://h:0"),
    (1, 5, "nats://h:0"),
    (3, 0, "nats://h:0,nats://h:1,nats://h:2"),
    (3, 1, "nats://h:1,nats://h:2,nats://h:0"),
    (3, 5, "nats://h:2,nats://h:0,nats://h:1"),
])
def test_host_i_prefers_server_i_mod_n_and_is_given_every_url(n: int, i: int,
                                                              want: str) -> None:
    assert _servers(n).url_for(i) == want


def test_servers_lists_every_url_and_leafnode_url() -> None:
    s = _servers(3)
    assert s.url == "nats://h:0,nats://h:1,nats://h:2"
    assert s.leafnode_urls == ["nats-leaf://h:100", "nats-leaf://h:101", "nats-leaf://h:102"]


@pytest.mark.parametrize(("varz", "wide", "want"), [
    ({"connections": 4, "routes": 2, "leafnodes": 1}, False,
     ["n0", "nats://h:0", 4, 2, 1]),
    (None, False, ["n0", "nats://h:0", "down", "-", "-"]),
    ({"connections": 0, "routes": 0, "leafnodes": 0}, True,
     ["n0", "nats://h:0", 0, 0, 0, "hub", 7, "http://m", "-"]),
])
def test_server_row(varz: dict[str, int] | None, wide: bool, want: list[object]) -> None:
    server = {"name": "n0", "client_url": "nats://h:0", "pid": 7, "monitor_url": "http://m",
              "leafnode_url": None, "role": "hub"}
    assert server_row(server, varz, wide=wide) == want


@pytest.mark.parametrize("grant", [roles.host("L", "NHOST"), roles.agent("L")])
def test_jetstream_reads_are_allowed_in_the_domain_form_too(grant: roles.Grant) -> None:
    pub = grant.permissions.pub_allow
    plain = [s for s in pub if s.startswith("$JS.API.")]
    assert plain, pub
    for subject in plain:  # each plain entry has its domain twin, nothing broader
        assert subject.replace("$JS.API.", "$JS.*.API.", 1) in pub
    assert "$JS.*.API.>" not in pub and "$JS.>" not in pub


def test_js_domain_flag_and_environment() -> None:
    seen: list[NatsFlags] = []

    @click.command()
    @nats_options(env_prefix="TESTPROG")
    def prog(nats: NatsFlags) -> None:
        seen.append(nats)

    runner = CliRunner()
    assert runner.invoke(prog, ["--js-domain", "hubdomain"]).exit_code == 0
    assert runner.invoke(prog, [], env={"TESTPROG_JS_DOMAIN": "fromenv"}).exit_code == 0
    assert runner.invoke(prog, []).exit_code == 0
    assert [f.options(name="t").js_domain for f in seen] == ["hubdomain", "fromenv", None]
