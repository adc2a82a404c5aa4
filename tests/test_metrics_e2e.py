"""End to end: the agent's and a host's metrics port, and JSON logs (issue 17, observability).

A real nats-server, real host processes, a real git repository and real agent processes
started with ``--metrics-addr 127.0.0.1:0 --log-format json``: the port each one chose is
read from its log (``metrics on URL``), the text it serves is parsed with
prometheus_client's own parser and compared with the status the agent wrote to git.
Every metric the Grafana dashboard (examples/grafana/vinculum.json) queries must be in
those scrapes. Nothing is mocked; waits are polls with deadlines.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli.examples import ExampleActor, build_examples
from lattice.status import Phase
from tests.agentproc import AgentProcess
from tests.helpers import eventually
from tests.lattice_e2e import Lattice, count_hosts, lat, repo, three_hosts
from tests.test_agent_e2e import BINDINGS, DEPLOYMENT
from tests.test_wasm_e2e import answer, bindings, deployment, push

__all__ = ["lat", "repo"]  # fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DASHBOARD = Path(__file__).resolve().parent.parent / "examples" / "grafana" / "vinculum.json"
OBSERVED = ["--metrics-addr", "127.0.0.1:0", "--log-format", "json"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics_url(log: str) -> str | None:
    """The URL a process logged it serves metrics on."""
    found = re.search(r"metrics on (http://[0-9.]+:\d+/metrics)", log)
    return found.group(1) if found else None


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def scrape(url: str) -> Samples:
    """Every sample of the endpoint, parsed by prometheus_client: (name, labels) -> value."""
    status, text = await get(url)
    assert status == 200, text
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def dashboard_metrics() -> set[str]:
    """The metric names every query of the dashboard reads."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs, "the dashboard queries nothing"
    return {m for e in exprs for m in re.findall(r"\bvinculum_[a-z_]+", e)}


async def started(proc: AgentProcess) -> str:
    return await eventually(lambda: metrics_url(proc.log()), timeout=20,
                            message=lambda: f"metrics URL in the log\n{proc.log()[-2000:]}")


async def test_agent_metrics_match_its_status_and_health(lat: Lattice) -> None:
    await three_hosts(lat)
    sha = lat.commit({"deployments/amazing-deployment.yaml": DEPLOYMENT,
                      "bindingsets/amazing-bindings.yaml": BINDINGS}, "deploy")
    leader = lat.agent("a", extra_args=OBSERVED)
    url = await started(leader)
    status = await lat.status_of(sha, Phase.SYNCED, timeout=30)
    dep = status.deployments["amazing-deployment"]

    samples = await scrape(url)
    assert {p.value: value(samples, "vinculum_deployment_phase",
                           deployment="amazing-deployment", phase=p.value) for p in Phase} == {
        p.value: (1.0 if p is dep.phase else 0.0) for p in Phase}
    for kind, count in (("actors", dep.actors), ("providers", dep.providers)):
        assert value(samples, "vinculum_deployment_desired", deployment="amazing-deployment",
                     kind=kind) == count.desired
        assert value(samples, "vinculum_deployment_ready", deployment="amazing-deployment",
                     kind=kind) == count.ready
    assert (dep.actors.desired, dep.providers.desired) == (1, 2)
    assert value(samples, "vinculum_deployment_revision_info",
                 deployment="amazing-deployment", revision=dep.revision) == 1
    assert value(samples, "vinculum_applied_revision_info", revision=sha) == 1
    assert value(samples, "vinculum_leader") == 1
    assert value(samples, "vinculum_hosts") == 3
    assert value(samples, "vinculum_git_fetch_failures") == 0
    assert value(samples, "vinculum_git_push_errors") == 0
    # every acked command the agent logged was counted ok, under its kind
    ok = sum(v for (n, labels), v in samples.items()
             if n == "vinculum_commands_total" and ("result", "ok") in labels)
    assert ok == leader.commands_sent() >= 4  # 1 actor, 2 providers, 1 binding
    # (one start, unless a loaded machine made the agent start a replica again)
    starts = sum(1 for line in leader.log().splitlines() if "actor.start on host" in line)
    assert value(samples, "vinculum_commands_total", kind="start_actor",
                 result="ok") == starts >= 1, leader.log()[-3000:]
    passes = value(samples, "vinculum_reconcile_duration_seconds_count") or 0
    assert passes >= 1
    assert (value(samples, "vinculum_reconcile_duration_seconds_bucket", le="+Inf")
            == passes)
    assert (value(samples, "vinculum_auction_duration_seconds_count", kind="actor") or 0) >= 1
    assert 0 <= (value(samples, "vinculum_seconds_since_last_reconcile") or -1) < 60

    assert (await get(url.replace("/metrics", "/healthz")))[0] == 200
    assert (await get(url.replace("/metrics", "/readyz")))[0] == 200

    # a follower: not the leader, ready once it evaluated the head (its view is fresh)
    follower = lat.agent("b", extra_args=OBSERVED)
    furl = await started(follower)

    async def follower_ready() -> Samples | None:
        code, _ = await get(furl.replace("/metrics", "/readyz"))
        return await scrape(furl) if code == 200 else None

    fsamples = await eventually(follower_ready, timeout=20, message="follower ready")
    assert value(fsamples, "vinculum_leader") == 0
    assert value(fsamples, "vinculum_hosts") == 3

    # every metric the dashboard queries is served (host metrics: the other test)
    served = {re.sub(r"_(bucket|count|sum)$", "", n) for n in names(samples)} | names(samples)
    missing = {m for m in dashboard_metrics() if not m.startswith("vinculum_host_")} - served
    assert not missing, f"the dashboard queries metrics no agent serves: {sorted(missing)}"

    # --log-format json: every line an object; the lines after the revision carry it
    lines = [json.loads(line) for line in leader.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in lines)
    applied = [r for r in lines if r["message"].startswith(f"revision {sha[:8]}:")]
    assert applied and all(r.get("revision") == sha for r in applied[1:]), applied
    assert any(r.get("revision") == sha and "on host" in r["message"] for r in lines)


@pytest.fixture(scope="module")
def examples() -> dict[str, ExampleActor]:
    return {a.name: a for a in build_examples()}


async def test_host_metrics_count_actor_requests(
        lat: Lattice, examples: dict[str, ExampleActor]) -> None:
    echo = examples["echo"]
    await push(lat, echo.wasm)
    host = lat.pool.spawn(labels={"zone": "a"}, name="w0",
                          extra_args=["--runtime", "wasm", *OBSERVED])
    await eventually(lambda: count_hosts(lat, 1), timeout=30, message="the wasm host")
    url = await eventually(lambda: metrics_url(host.log_path.read_text()), timeout=10,
                           message="host metrics URL")
    sha = lat.commit({"deployments/echo.yaml": deployment("echo", echo.claims.subject),
                      "bindingsets/echo.yaml": bindings("echo", echo.claims.subject,
                                                        "demo.echo")}, "echo")
    agent = lat.agent()
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=45,
                     message=lambda: f"echo Synced\n{agent.log()[-3000:]}")
    before = await scrape(url)
    assert value(before, "vinculum_host_actor_instances", actor=echo.claims.subject) == 1
    assert value(before, "vinculum_host_actors") == 1
    assert value(before, "vinculum_host_providers") == 1
    reply = await eventually(lambda: answer(lat, "demo.echo", b"count me"), timeout=15,
                             message="echo answers")
    assert reply == b"count me"
    earlier = value(before, "vinculum_host_actor_requests_total", actor=echo.claims.subject,
                    result="ok") or 0

    async def counted() -> Samples | None:  # the actor replies from inside the call, so
        samples = await scrape(url)  # the call may end (and count) after the reply came
        done = value(samples, "vinculum_host_actor_requests_total", actor=echo.claims.subject,
                     result="ok") or 0
        return samples if done >= earlier + 1 else None

    after = await eventually(counted, timeout=10, message="the request counted")
    ok = value(after, "vinculum_host_actor_requests_total", actor=echo.claims.subject,
               result="ok") or 0
    assert (value(after, "vinculum_host_actor_request_duration_seconds_count",
                  actor=echo.claims.subject) or 0) >= ok
    dashboard = {m for m in dashboard_metrics() if m.startswith("vinculum_host_")}
    served = {re.sub(r"_(bucket|count|sum)$", "", n) for n in names(after)} | names(after)
    assert dashboard and dashboard <= served, sorted(dashboard - served)
    assert (await get(url.replace("/metrics", "/healthz")))[0] == 200
    assert (await get(url.replace("/metrics", "/readyz")))[0] == 200

    lines = [json.loads(line) for line in host.log_path.read_text().splitlines()
             if line.strip()]
    joined = [r for r in lines if "joined lattice" in r["message"]]
    assert joined and joined[0]["host"] == "w0", joined
    assert joined[0]["host_id"]
    # every line of the host, whichever module logs it, names the host (its context)
    assert {(r.get("host"), r.get("host_id")) for r in lines} == {
        ("w0", joined[0]["host_id"])}, [r for r in lines if r.get("host") != "w0"][:3]
    assert len(joined[0]["host_id"]) == 56  # the full id
