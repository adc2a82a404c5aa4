"""Issue 18, live updates in a real browser (headless Debian chromium through Playwright)
against a real ``latticectl up`` lattice, without reloading the page (``window.__marker``
set before survives): ``latticectl apply -f`` of a new deployment shows its row Progressing
then Synced, each within 1 s of the status commit that says so landing on the status
branch; the deployment page's history grows with a second commit and links to the diff
between the two revisions; the event feed shows the provider the commit started; a
provider started by hand with a raw host command shows as unmanaged; and a host killed
with SIGKILL is greyed out on the lattice picture ("not answering") while the actor it ran
appears on another host.

The tests run in file order and build on each other's commits; the host is killed last.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from cli.localstack import StackState
from lattice.natsutil import connect
from lattice.protocol import CommandAck, StartProviderCommand, Subjects, encode
from tests.browser.conftest import WAIT_MS
from tests.browser.pagejs import HOSTS, MOVED, WATCH_PHASE
from tests.browser.stack import Dashboard, Lattice, RefWatch, git_out, status_phase

if TYPE_CHECKING:  # imported by the fixtures, which skip or fail without playwright
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

#: issue 18: a commit appears on screen within 1 s of the status change. Measured at load
#: ~8 on 2 cores (the 4-worker suite): 0.06-0.3 s, but once 3.2 s at load 7 in a CI run
#: beside other work. The figure itself is bench/bench_dashboard.py's (1,000 deployments
#: on 100 hosts: p50 0.33-0.41 s, max 0.44-0.58 s at load 2-4); here, when the 1-minute
#: load is above 2 per core (each process waits for a core), the bound is 5 s, and the
#: assertion message says which bound applied and both clocks.
LIVE_BOUND_S = 1.0
OVERLOADED_BOUND_S = 5.0


def live_bound() -> tuple[float, str]:
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 2 * cores:
        return OVERLOADED_BOUND_S, f"load {load:.1f} on {cores} cores: overloaded bound"
    return LIVE_BOUND_S, f"load {load:.1f} on {cores} cores"


def logbook(label: str | None = None) -> str:
    """A new deployment: the host log provider (wascc:logging, vendor default), started by
    a host as soon as the agent asks: Progressing while it starts, then Synced."""
    labels = f"  labels:\n    tier: {label}\n" if label else ""
    return ("apiVersion: vinculum.io/v1\nkind: Deployment\nmetadata:\n  name: logbook\n"
            f"{labels}spec:\n  providers:\n    - id: wascc:logging\n"
            "      binding_name: default\n      vendor_id: default\n")


def open_overview(page: Page, dashboard: Dashboard) -> None:
    page.goto(dashboard.url)
    for name in ("amazing-deployment", "counter"):
        page.wait_for_selector(f'#deployment-{name}[data-phase="Synced"]', timeout=WAIT_MS)
    page.evaluate("window.__marker = 1")


def test_a_new_deployment_shows_progressing_then_synced_live(
        page: Page, dashboard: Dashboard, lattice: Lattice) -> None:
    open_overview(page, dashboard)
    version = int(page.locator("body").get_attribute("data-version") or "0")
    page.evaluate(WATCH_PHASE, "deployment-logbook")
    with RefWatch(lattice.repo) as watch:
        res = lattice.ctl("apply", "-f", "-", "--wait", "--timeout", "180s", stdin=logbook(),
                          timeout=240)
        assert res.returncode == 0, res.stdout + res.stderr
        page.wait_for_selector('#deployment-logbook[data-phase="Synced"]', timeout=WAIT_MS)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    assert int(page.locator("body").get_attribute("data-version") or "0") > version
    shown: list[tuple[str | None, float]] = [(p, t / 1000) for p, t in
                                             page.evaluate("window.__phases")]
    written = [(status_phase(lattice.repo, sha, "deployments", "logbook"), t)
               for sha, t in watch.seen]
    first_written: dict[str | None, float] = {}
    for phase, t in written:
        first_written.setdefault(phase, t)
    first_shown: dict[str | None, float] = {}
    for phase, t in shown:
        first_shown.setdefault(phase, t)
    assert "Synced" in first_written, written
    # The agent writes Progressing before it sends the commands, but its status writer
    # paces its commits: a start done within the pace goes straight to Synced (seen once
    # in a CI run). Every phase the branch recorded must reach the page, in time.
    recorded = [p for p in ("Progressing", "Synced") if p in first_written]
    delays = {p: first_shown[p] - first_written[p] for p in recorded if p in first_shown}
    bound, load = live_bound()
    report = f"status commits {written}, page {shown}, delays {delays}; {load}"
    print(report)
    assert all(p in first_shown for p in recorded), f"a phase never shown: {report}"
    assert [p for p, _ in shown if p is not None][-1] == "Synced", report
    assert all(d <= bound for d in delays.values()), f"over {bound:g} s: {report}"


def test_history_grows_and_links_the_diff(page: Page, dashboard: Dashboard,
                                          lattice: Lattice) -> None:
    before = lattice.head()
    res = lattice.ctl("apply", "-f", "-", "--wait", "--timeout", "180s",
                      stdin=logbook("audit"), timeout=240)
    assert res.returncode == 0, res.stdout + res.stderr
    after = lattice.head()
    page.goto(dashboard.origin + "/deployments/logbook")
    page.wait_for_function("""(sha) => Array.from(document.querySelectorAll(
        '#history tr[data-revision]')).some((r) => sha.startsWith(r.dataset.revision))""",
                           arg=after, timeout=WAIT_MS)
    revs = page.locator("#history tr[data-revision]").evaluate_all(
        "(rows) => rows.map((r) => [r.dataset.revision, r.textContent])")
    context = f"before {before}, after {after}, history {revs}"
    assert len(revs) >= 2, context
    assert any(after.startswith(r) for r, _ in revs), context
    assert any(before.startswith(r) for r, _ in revs), context
    author = git_out(lattice.repo, "log", "-1", "--format=%an", after)
    newest = next(text for r, text in revs if after.startswith(r))
    assert author in newest and "Synced" in newest, newest
    link = page.locator('#history a[href^="/diff/"]').first
    href = link.get_attribute("href") or ""
    old, new = href.removeprefix("/diff/").split("..")
    assert before.startswith(old) and after.startswith(new), (href, before, after)
    link.click()
    page.wait_for_url("**/diff/**")
    diff = page.locator("pre#diff").inner_text()
    assert any(line.startswith("+") and "tier: audit" in line for line in diff.splitlines()
               ), diff


def test_the_event_feed_shows_what_the_commit_started(page: Page,
                                                      dashboard: Dashboard) -> None:
    page.goto(dashboard.origin + "/events")
    page.wait_for_selector('ol#events li[data-type="provider_started"]', timeout=WAIT_MS)
    types = page.locator("ol#events li").evaluate_all("(l) => l.map((e) => e.dataset.type)")
    assert all(types), types


async def start_by_hand(lattice: Lattice, host_id: str, command: StartProviderCommand
                        ) -> CommandAck:
    """What an operator does with a raw host command (latticectl's admin credentials):
    the entity it starts has no owner annotation."""
    state = StackState.load(lattice.state_dir)
    assert state is not None
    nc = await connect(state.nats())
    try:
        reply = await nc.request(Subjects(lattice.lattice).host_command(
            host_id, "provider.start"), encode(command), timeout=10)
        return CommandAck.model_validate_json(reply.data)
    finally:
        await nc.close()


def test_an_entity_started_by_hand_shows_as_unmanaged(page: Page, dashboard: Dashboard,
                                                      lattice: Lattice) -> None:
    page.goto(dashboard.origin + "/lattice")
    page.evaluate("window.__marker = 1")
    host = page.locator('article.host[data-name="host-2"]').get_attribute("data-host")
    assert host is not None
    command = StartProviderCommand(capability_id="wascc:extras", vendor_id="default")
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's loop
        ack = pool.submit(asyncio.run, start_by_hand(lattice, host, command)).result(30)
    assert ack.accepted, ack
    extras = page.locator('article.host[data-name="host-2"] '
                          'li.entity[data-kind="provider"][data-ref^="wascc:extras"]')
    extras.wait_for(timeout=WAIT_MS)
    assert extras.get_attribute("data-owner") == ""
    assert "unmanaged" in (extras.get_attribute("class") or "").split()
    assert "unmanaged" in extras.inner_text()
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


def test_a_killed_host_greys_out_and_its_actor_moves(page: Page, dashboard: Dashboard,
                                                     lattice: Lattice) -> None:
    page.goto(dashboard.origin + "/lattice")
    page.wait_for_function("""() => document.querySelectorAll(
        'article.host[data-state="up"] li.entity[data-kind="actor"]').length >= 2""",
                           timeout=WAIT_MS)
    page.evaluate("window.__marker = 1")
    hosts = page.evaluate(HOSTS)
    # a host running a managed actor; host-0 (leds=12, the only LED host) last choice
    candidates = sorted(
        ((h["name"], e["ref"]) for h in hosts for e in h["entities"]
         if e["kind"] == "actor" and e["owner"]),
        key=lambda c: (c[0] == "host-0", c[0]))
    assert candidates, hosts
    victim, actor = candidates[0]
    pid = lattice.host_pid(victim)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)  # a process `up` started for this module's lattice
    page.wait_for_selector(f'article.host[data-name="{victim}"][data-state="gone"]',
                           timeout=WAIT_MS)
    greyed = time.monotonic() - killed
    page.wait_for_function(MOVED, arg=[actor, victim], timeout=WAIT_MS)
    moved = time.monotonic() - killed
    print(f"{victim} killed: greyed out after {greyed:.2f} s, {actor[:8]} on another host "
          f"after {moved:.2f} s")
    gone = page.locator(f'article.host[data-name="{victim}"]')
    assert "not answering" in gone.inner_text()
    opacity, filt, colour = gone.evaluate("""(e) => { const s = getComputedStyle(e);
        return [s.opacity, s.filter, s.color]; }""")
    up = page.locator('article.host[data-state="up"]').first.evaluate(
        "(e) => getComputedStyle(e).color")
    assert float(opacity) < 1 or filt != "none" or colour != up, (opacity, filt, colour)
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
