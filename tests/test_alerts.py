"""Alerts out, end to end: a real agent, nats-server and hosts, and a local aiohttp server
on loopback standing in for the alert endpoints (Slack's incoming webhook, a generic
receiver).

A deployment that no host can place goes Degraded, its fix Synced: the good endpoint
receives exactly those two events for it, in order, each signed with the alert secret;
an endpoint that answers 500 gets each event a bounded number of times (then the agent
gives up and says so); an endpoint that holds every request open does not hold up the
reconcile. The pure parts (which phase changes alert, the body) are tables below.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from lattice.status import Phase
from reconciler.alerts import RETRY, AlertConfig, AlertEvent, Alerts, changes
from tests.helpers import eventually
from tests.lattice_e2e import Lattice, count_hosts, lat, repo
from tests.test_metrics_e2e import get, metrics_url, scrape, value

__all__ = ["lat", "repo"]  # fixtures

SECRET = b"alert-secret-5e0b"
ATTEMPTS = AlertConfig().attempts


@dataclass
class Receiver:
    """Alert endpoints on 127.0.0.1: /ok answers 200, /fail 500, /hang never (until
    ``release``)."""

    base: str = ""
    ok: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    failed: list[bytes] = field(default_factory=list)
    hung: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path == "/ok":
            self.ok.append((dict(request.headers), body))
            return web.Response(status=200)
        if request.path == "/fail":
            self.failed.append(body)
            return web.Response(status=500)
        self.hung += 1
        await self.release.wait()
        return web.Response(status=200)

    def events(self, kind: str) -> list[dict[str, object]]:
        docs = [json.loads(b) for _, b in self.ok]
        return [d for d in docs if d["kind"] == kind]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rec.base = f"http://{host}:{port}"
    try:
        yield rec
    finally:
        rec.release.set()
        await runner.cleanup()


def _deployment(rule: str) -> dict[str, object]:
    return {"kind": "Deployment", "metadata": {"name": "leds"},
            "spec": {"providers": [{"id": "iot:ledcontroller", "vendor_id": "wascc",
                                    "affinity_rules": [rule]}]}}


@pytest.mark.e2e
@pytest.mark.timeout(180)
async def test_degraded_then_synced_alerts_signed_retried_and_never_blocking(
        lat: Lattice, receiver: Receiver, tmp_path: Path) -> None:
    lat.pool.spawn(labels={"leds": "12"}, name="pi")
    await eventually(lambda: count_hosts(lat, 1), timeout=20, message="1 host")
    secret_file = tmp_path / "alert-secret"
    secret_file.write_bytes(SECRET + b"\n")
    bad = lat.commit({"deployments/leds.yaml": _deployment("leds=99")}, "no host has leds=99")
    agent = lat.agent(extra_args=[
        "--alert-url", f"{receiver.base}/ok", "--alert-url", f"{receiver.base}/fail",
        "--alert-url", f"{receiver.base}/hang", "--alert-secret-file", str(secret_file),
        "--metrics-addr", "127.0.0.1:0"])
    await eventually(lambda: lat.note_phase(bad, Phase.DEGRADED), timeout=30,
                     message=lambda: f"Degraded\n{agent.log()[-3000:]}")
    await eventually(lambda: receiver.events("Deployment") or None, timeout=10,
                     message="the Degraded alert arrives")
    await eventually(lambda: receiver.hung or None, timeout=10,
                     message="the hanging endpoint got its request")

    fixed = lat.commit({"deployments/leds.yaml": _deployment("leds=12")}, "fix the rule")
    # /hang still holds the Degraded alert open: the reconcile goes on regardless
    await eventually(lambda: lat.note_phase(fixed, Phase.SYNCED), timeout=30,
                     message=lambda: f"Synced while an alert endpoint hangs\n{agent.log()[-3000:]}")
    assert receiver.hung == 1 and not receiver.release.is_set()
    await eventually(lambda: len(receiver.events("Deployment")) >= 2 or None, timeout=10,
                     message="the Synced alert arrives")

    deps = receiver.events("Deployment")
    assert [(d["name"], d["phase"], d["previous_phase"], d["revision"]) for d in deps] == [
        ("leds", "Degraded", None, bad), ("leds", "Synced", "Degraded", fixed)]
    assert "no host satisfies leds=99" in str(deps[0]["message"])
    assert str(deps[0]["text"]).startswith(":x: Deployment leds is Degraded at revision")
    assert str(deps[1]["text"]).startswith(
        ":white_check_mark: Deployment leds is Synced (was Degraded)")
    assert [(d["phase"], d["previous_phase"]) for d in receiver.events("Revision")] == [
        ("Degraded", None), ("Synced", "Degraded")]
    for headers, body in receiver.ok:
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Vinculum-Signature"], expected)
        assert headers["Content-Type"] == "application/json"

    # /fail: each of the 4 events (2 kinds x 2 phases) tried ATTEMPTS times, then given up
    await eventually(lambda: agent.log().count("not delivered to http://127.0.0.1") >= 4
                     or None, timeout=30, message=lambda: f"gave up\n{agent.log()[-3000:]}")
    assert len(receiver.failed) == 4 * ATTEMPTS
    assert set(receiver.failed) == {b for _, b in receiver.ok}  # the same 4 events
    assert "/fail" not in agent.log() and SECRET.decode() not in agent.log()

    # the counts, scraped from the agent and read with prometheus_client's parser: the
    # three URLs share a destination; /hang has delivered nothing yet
    url = await eventually(lambda: metrics_url(agent.log()), message="metrics URL")
    samples = await scrape(url)
    dest = {"destination": receiver.base}
    assert value(samples, "vinculum_alerts_sent_total", **dest) == 4
    assert (value(samples, "vinculum_alerts_failed_total", **dest) or 0) >= 4
    assert value(samples, "vinculum_alerts_dropped_total", **dest) == 0
    assert (value(samples, "vinculum_alerts_queued", **dest) or 0) <= 3
    _, text = await get(url)
    assert "/fail" not in text and "/ok" not in text


T0 = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(("last", "phase", "expected"), [
    (None, Phase.SYNCED, None),  # a first Synced says nothing
    (None, Phase.DEGRADED, None),  # a first Degraded does (previous: None)
    (Phase.SYNCED, Phase.DEGRADED, Phase.SYNCED),
    (Phase.DEGRADED, Phase.SYNCED, Phase.DEGRADED),
    (Phase.INVALID, Phase.SYNCED, Phase.INVALID),
    (Phase.DEGRADED, Phase.DEGRADED, None),  # no change, no alert
    (Phase.DEGRADED, Phase.PROGRESSING, None),  # on the way: not remembered
    (Phase.SYNCED, Phase.SUPERSEDED, None),
    (Phase.DEGRADED, Phase.INVALID, Phase.DEGRADED),
])
def test_changes(last: Phase | None, phase: Phase, expected: Phase | None) -> None:
    memory = {} if last is None else {("Deployment", "d"): last}
    out = changes(memory, [("Deployment", "d", phase, "m")])
    alerts = phase in (Phase.DEGRADED, Phase.INVALID) and phase != last
    recovers = phase is Phase.SYNCED and last in (Phase.DEGRADED, Phase.INVALID)
    if alerts or recovers:
        assert out == [("Deployment", "d", phase, expected, "m")]
    else:
        assert out == []


def test_body_is_generic_and_slack_compatible() -> None:
    ev = AlertEvent(kind="Deployment", name="web", revision="a" * 40, phase=Phase.SYNCED,
                    previous_phase=Phase.DEGRADED, message="2/2 ready", time=T0)
    assert json.loads(ev.body()) == {
        "kind": "Deployment", "name": "web", "revision": "a" * 40, "phase": "Synced",
        "previous_phase": "Degraded", "message": "2/2 ready",
        "time": "2026-12-01T00:00:00+00:00", "severity": "info",
        "reporting_controller": "vinculum",
        "text": ":white_check_mark: Deployment web is Synced (was Degraded) at revision "
                "aaaaaaaaaaaa: 2/2 ready"}


def test_retry_is_bounded() -> None:
    total = sum(RETRY.delay(n) for n in range(ATTEMPTS - 1))
    assert ATTEMPTS == 5 and total <= 3.75


async def test_a_full_queue_drops_the_oldest_and_a_superseded_note_says_nothing() -> None:
    alerts = Alerts(AlertConfig(urls=("http://127.0.0.1:9/x",), queue_size=2))
    rev = SimpleNamespace(sha="b" * 40, counts=())
    for phase in (Phase.DEGRADED, Phase.SYNCED, Phase.INVALID):  # 3 alerts, room for 2
        alerts.noted(rev, phase, "m")
    alerts.noted(rev, Phase.SUPERSEDED, "m")
    queue = alerts.queues["http://127.0.0.1:9/x"]
    assert alerts.dropped == 1 and queue.qsize() == 2
    assert [queue.get_nowait().phase for _ in range(2)] == [Phase.SYNCED, Phase.INVALID]


def test_alert_counts_are_prometheus_counters_by_destination() -> None:
    """sent/failed/dropped per --alert-url, exported as vinculum_alerts_*_total by
    scheme://host:port (URLs on one host add up, no path: it may be a secret) and read
    back with prometheus_client's own parser."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from reconciler.metrics import _alerts

    urls = ("https://hooks.example:8443/services/T0/B0/SECRET", "https://hooks.example:8443/b",
            "http://127.0.0.1:9/x")
    alerts = Alerts(AlertConfig(urls=urls, queue_size=1))
    alerts.counts[urls[0]].update(sent=3, failed=1)
    alerts.counts[urls[1]].update(sent=2)
    rev = SimpleNamespace(sha="c" * 40, counts=())
    for phase in (Phase.DEGRADED, Phase.SYNCED):  # room for 1 per URL: 1 dropped each
        alerts.noted(rev, phase, "m")
    assert (alerts.sent, alerts.failed, alerts.dropped) == (5, 1, 3)

    class Only:  # the alert families of the agent's collector, alone
        def collect(self) -> object:
            return _alerts(SimpleNamespace(alerts=alerts))  # type: ignore[arg-type]

    registry = CollectorRegistry()
    registry.register(Only())  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert "SECRET" not in text and "/services" not in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {n: families[n].type for n in families} == {
        "vinculum_alerts_sent": "counter", "vinculum_alerts_failed": "counter",
        "vinculum_alerts_dropped": "counter", "vinculum_alerts_queued": "gauge"}
    samples = {(s.name, s.labels["destination"]): s.value
               for f in families.values() for s in f.samples if not s.name.endswith("_created")}
    hooks, local = "https://hooks.example:8443", "http://127.0.0.1:9"
    assert samples == {
        ("vinculum_alerts_sent_total", hooks): 5, ("vinculum_alerts_sent_total", local): 0,
        ("vinculum_alerts_failed_total", hooks): 1, ("vinculum_alerts_failed_total", local): 0,
        ("vinculum_alerts_dropped_total", hooks): 2, ("vinculum_alerts_dropped_total", local): 1,
        ("vinculum_alerts_queued", hooks): 2, ("vinculum_alerts_queued", local): 1}
    assert list(_alerts(SimpleNamespace(alerts=Alerts(AlertConfig())))) == []  # type: ignore[arg-type]
