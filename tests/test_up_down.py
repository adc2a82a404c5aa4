"""``latticectl up --detach`` then ``down``: a whole local lattice, started and stopped by pid.

On the way it walks README.md's tour: echo and counter answer, the demo converges, and the
tour's ``http.yaml`` (read from the README, on a free port instead of 8087) puts echo behind
``wascc:http_server``, which answers a POST with its body.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from cli.main import cli
from cli.reach import ping_hosts
from lattice.localnats import free_port
from lattice.natsutil import NatsOptions
from tests.helpers import eventually_sync, pid_alive

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

README = Path(__file__).resolve().parent.parent / "README.md"


def _ok(result: Result) -> str | None:
    return result.output if result.exit_code == 0 else None


def _tour_http_yaml(port: int) -> str:
    """The tour's ``http.yaml`` as README.md writes it, on ``port`` instead of 8087."""
    found = re.search(r"^cat > http\.yaml <<'EOF'\n(.*?)^EOF$", README.read_text(), re.S | re.M)
    assert found, "README.md's tour has no http.yaml heredoc"
    assert found.group(1).count('PORT: "8087"') == 1, found.group(1)
    return found.group(1).replace('PORT: "8087"', f'PORT: "{port}"')


def _post(port: int, body: bytes) -> tuple[int, bytes]:
    with urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/", data=body), timeout=10) as response:
        return response.status, response.read()


def test_up_detach_then_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    runner = CliRunner()
    env = {"LATTICECTL_CONFIG": str(tmp_path / "none.yaml")}
    result = runner.invoke(cli, ["--state-dir", str(state_dir), "--lattice", "updown", "up",
                                 "--detach", "--hosts", "3", "--heartbeat", "0.5"], env=env)
    state = json.loads((state_dir / "state.json").read_text()) if (
        state_dir / "state.json").exists() else None
    try:
        assert result.exit_code == 0, result.output
        assert state is not None
        pids = [p["pid"] for p in state["procs"]]
        roles = sorted(p["role"] for p in state["procs"])
        assert roles == ["agent", "host", "host", "host", "nats-server"]
        # secure by default: a credential per role, and nobody gets in without one
        assert state["secure"] is True
        assert sorted(state["creds"]) == ["admin", "agent", "apps", "host-0", "host-1",
                                          "host-2"]
        assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in state["creds"].values())
        with pytest.raises(ConnectionError, match="Authorization Violation"):
            asyncio.run(ping_hosts(state["nats_url"], "updown", timeout=1.0))
        admin = NatsOptions(url=state["nats_url"], creds_file=state["creds"]["admin"])
        invs = asyncio.run(ping_hosts(admin, "updown", timeout=1.0))
        assert sorted(i.name for i in invs) == ["host-0", "host-1", "host-2"]
        assert {i.name: i.labels.get("leds") for i in invs}["host-0"] == "12"
        # the demo repository was made from examples/repo
        assert (Path(state["repo"]) / ".git").is_dir()
        # the demo answers: echo and counter run as WebAssembly on the hosts `up` started
        ctl = ["--state-dir", str(state_dir), "--lattice", "updown"]
        echoed = eventually_sync(lambda: _ok(runner.invoke(
            cli, [*ctl, "request", "demo.echo", "hi up", "--timeout", "1s"], env=env)),
            timeout=60, message="demo.echo answers")
        assert echoed.strip() == "hi up"
        counted = runner.invoke(cli, [*ctl, "request", "demo.counter", "--count", "2"], env=env)
        assert counted.exit_code == 0, counted.output
        first, second = (int(x) for x in counted.output.split())
        assert second == first + 1
        # the acceptance: the agent converges the demo repository, and says so
        status = runner.invoke(cli, [*ctl, "status", "--wait", "--timeout", "60"], env=env)
        assert status.exit_code == 0, status.output
        got = runner.invoke(cli, [*ctl, "get", "deployments"], env=env)
        assert got.exit_code == 0, got.output
        rows = {r[0]: r for r in (line.split() for line in got.stdout.splitlines()[1:])}
        assert rows["amazing-deployment"][2:5] == ["1/1", "2/2", "Synced"], got.stdout
        # the agent's metrics: on a loopback port, in the summary and state.json
        assert state["metrics_url"].startswith("http://127.0.0.1:")
        assert f"metrics: {state['metrics_url']}" in result.output
        with urllib.request.urlopen(state["metrics_url"], timeout=10) as response:
            families = text_string_to_metric_families(response.read().decode())
            scraped = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for fam in families for s in fam.samples}
        assert scraped[("vinculum_deployment_phase", (
            ("deployment", "amazing-deployment"), ("phase", "Synced")))] == 1
        # the tour's HTTP step: echo behind wascc:http_server, two documents in one file
        port = free_port()
        applied = runner.invoke(cli, [*ctl, "apply", "-f", "-"], input=_tour_http_yaml(port),
                                env=env)
        assert applied.exit_code == 0, applied.output
        assert applied.stdout.splitlines()[:2] == ["deployment/echo-http created",
                                                   "bindingset/echo-http created"]
        status = runner.invoke(cli, [*ctl, "status", "--wait", "--timeout", "60"], env=env)
        assert status.exit_code == 0, status.output
        assert _post(port, b"hello over http") == (200, b"hello over http")
        again = runner.invoke(cli, ["--state-dir", str(state_dir), "up", "--detach"], env=env)
        assert again.exit_code != 0 and "already up" in again.output
    finally:
        down = runner.invoke(cli, ["--state-dir", str(state_dir), "down"], env=env)
    assert down.exit_code == 0, down.output
    assert "stopped 5 processes" in down.output
    assert not any(pid_alive(pid) for pid in pids)
    assert not (state_dir / "state.json").exists()
    nothing = runner.invoke(cli, ["--state-dir", str(state_dir), "down"], env=env)
    assert nothing.exit_code != 0 and "nothing is up" in nothing.output
