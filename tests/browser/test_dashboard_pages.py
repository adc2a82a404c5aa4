"""Issue 18, the dashboard's pages in a real browser (headless Debian chromium through
Playwright) against a real ``latticectl up`` lattice, nothing changed on it: the overview
lists the demo deployments and binding sets as Synced, with the phase as a word and not
colour alone, and the branch head; every page is useful without JavaScript (``curl`` of
``/`` shows the names and phases); the lattice picture groups hosts by zone (or another
label) with what each runs, coloured by owner; a deployment page shows its manifest,
placements, conditions and history; the keyboard reaches every deployment link with a
visible focus; a 375 px wide phone has no horizontal scroll; the phase badges (and the
overview's text) pass WCAG AA contrast in light and dark schemes; nothing is loaded from
another origin; and the server is read-only.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

import pytest

from lattice.status import Phase
from tests.browser.conftest import WAIT_MS
from tests.browser.pagejs import CONTRAST, HOSTS
from tests.browser.stack import Dashboard, Lattice, git_out

if TYPE_CHECKING:  # imported by the fixtures, which skip or fail without playwright
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DEPLOYMENTS = ("amazing-deployment", "counter")  # examples/repo/deployments
BINDINGSETS = ("amazing-bindings", "counter-bindings")  # examples/repo/bindingsets
ECHO = "MAJEM2O2J4G2RZP3EBFQ2F2EMVNEOUNEUURCHJ3Z5JRSJ65UTICCEK25"
COUNTER = "MCIW2DU4NT4OHMJOH7PFZLBJRJ54J7R3PIHD5FTS3FVCMHU7HQN6BPY2"
#: XML namespace names: identifiers in SVG/DOM code, never fetched
NAMESPACES = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xhtml",
              "http://www.w3.org/1999/xlink", "http://www.w3.org/XML/1998/namespace")


def fetch(url: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, content type, body) of a plain HTTP request, no JavaScript."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, res.headers.get("Content-Type", ""), res.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode(
            errors="replace")


def synced_overview(page: Page, dashboard: Dashboard) -> None:
    """Open ``/`` and wait until every demo deployment and binding set shows Synced (the
    agent may still be converging right after ``up``)."""
    page.goto(dashboard.url)
    for name in DEPLOYMENTS:
        page.wait_for_selector(f'#deployment-{name}[data-phase="Synced"]', timeout=WAIT_MS)
    for name in BINDINGSETS:
        page.wait_for_selector(f'#bindingset-{name}[data-phase="Synced"]', timeout=WAIT_MS)


def test_overview_lists_the_demo_as_synced(page: Page, dashboard: Dashboard,
                                           lattice: Lattice) -> None:
    synced_overview(page, dashboard)
    for kind, names in (("deployment", DEPLOYMENTS), ("bindingset", BINDINGSETS)):
        for name in names:
            row = page.locator(f"#{kind}-{name}")
            assert row.get_attribute("data-name") == name
            assert row.locator(f'a[href="/{kind}s/{name}"]').inner_text().strip() == name
            badge = row.locator("td.phase span.phase")
            assert badge.inner_text().strip() == "Synced"  # the word, not colour alone
            assert "phase-synced" in (badge.get_attribute("class") or "").split()
    for name in DEPLOYMENTS:
        ready = page.locator(f"#deployment-{name} td.ready").inner_text().strip()
        got, want = (int(x) for x in ready.split("/"))
        assert got == want > 0, ready
    head = page.locator("#source #branch-head").inner_text().split()[0]  # sha, subject
    assert len(head) >= 7 and lattice.head().startswith(head), (head, lattice.head())
    assert page.locator("#source #evaluated").count() == 1
    assert page.locator("#source #signature").count() == 1
    assert page.locator("main#main").count() == 1


def test_curl_of_the_overview_shows_names_and_phases(dashboard: Dashboard) -> None:
    status, ctype, html = fetch(dashboard.url)
    assert status == 200 and ctype.startswith("text/html"), (status, ctype)
    for name in (*DEPLOYMENTS, *BINDINGSETS):
        row = re.search(rf'<tr[^>]*id="(?:deployment|bindingset)-{name}"[^>]*>(.*?)</tr>',
                        html, re.S)
        assert row is not None, f"no row for {name} in the server's HTML"
        assert name in row.group(1) and "Synced" in row.group(1), row.group(0)
    health = fetch(dashboard.origin + "/healthz")
    assert health[0] == 200 and health[2].strip() == "ok", health


def test_pages_work_without_javascript(browser: Browser, dashboard: Dashboard) -> None:
    ctx = browser.new_context(java_script_enabled=False)
    try:
        page = ctx.new_page()
        page.goto(dashboard.url)
        for name in DEPLOYMENTS:
            assert page.locator(f"#deployment-{name} td.phase").inner_text().strip() in set(
                Phase), name
        page.goto(dashboard.origin + "/lattice")
        assert page.locator("article.host").count() == 3
        page.goto(dashboard.origin + "/deployments/counter")
        assert COUNTER in page.locator("#manifest pre").inner_text()
        page.goto(dashboard.origin + "/events")
        assert page.locator("ol#events").count() == 1
    finally:
        ctx.close()


def test_lattice_picture_groups_hosts_by_zone(page: Page, dashboard: Dashboard) -> None:
    page.goto(dashboard.origin + "/lattice")
    # every demo entity placed: echo and counter actors, the LED controller on host-0
    page.wait_for_function(f"""() => ['{ECHO}', '{COUNTER}'].every((a) =>
        document.querySelector(`article.host li.entity[data-kind="actor"][data-ref="${{a}}"]`))
        && document.querySelector('article.host li.entity[data-ref^="iot:ledcontroller"]')""",
                           timeout=WAIT_MS)
    hosts = {h["name"]: h for h in page.evaluate(HOSTS)}
    assert set(hosts) == {"host-0", "host-1", "host-2"}, hosts
    assert {n: h["group"] for n, h in hosts.items()} == {"host-0": "a", "host-1": "a",
                                                         "host-2": "b"}
    assert all(h["state"] == "up" and len(h["id"]) == 56 for h in hosts.values()), hosts
    owners = {e["ref"]: e["owner"] for h in hosts.values() for e in h["entities"]
              if e["kind"] == "actor"}
    assert owners[ECHO] == "amazing-deployment" and owners[COUNTER] == "counter", owners
    # a provider's ref: its capability id, here with its link name (iot:ledcontroller/default)
    assert any(e["ref"].split("/")[0] == "iot:ledcontroller" and e["kind"] == "provider"
               for e in hosts["host-0"]["entities"]), hosts["host-0"]
    managed = [e for h in hosts.values() for e in h["entities"] if e["owner"]]
    assert not any(e["unmanaged"] for e in managed)
    # entities are coloured by their owner: two deployments, two colours
    colours = {page.locator(f'li.entity[data-ref="{ref}"]').first.evaluate(
        "(e) => getComputedStyle(e).backgroundColor + '|' + getComputedStyle(e).borderColor"
        " + '|' + getComputedStyle(e).color") for ref in (ECHO, COUNTER)}
    assert len(colours) == 2, colours
    page.goto(dashboard.origin + "/lattice?group=leds")
    groups = {h["name"]: h["group"] for h in page.evaluate(HOSTS)}
    assert groups == {"host-0": "12", "host-1": "", "host-2": ""}, groups


def test_deployment_page(page: Page, dashboard: Dashboard, lattice: Lattice) -> None:
    synced_overview(page, dashboard)
    page.click('a[href="/deployments/counter"]')
    page.wait_for_url("**/deployments/counter")
    manifest = page.locator("#manifest pre").inner_text()
    assert "counter" in manifest and COUNTER in manifest and "wascc:keyvalue" in manifest
    placements = page.locator("#placements tr[data-host]")
    assert placements.count() >= 1
    for i in range(placements.count()):
        assert placements.nth(i).locator("td").count() >= 2  # with its reason
    assert page.locator('#conditions tr[data-type="Ready"]').count() == 1
    history = page.locator("#history tr[data-revision]")
    assert history.count() >= 1
    shas = git_out(lattice.repo, "log", "--format=%H", "main").split()
    rev = history.first.get_attribute("data-revision") or ""
    assert len(rev) >= 7 and any(s.startswith(rev) for s in shas), (rev, shas)
    assert fetch(dashboard.origin + "/deployments/no-such-thing")[0] == 404
    assert fetch(dashboard.origin + "/bindingsets/no-such-thing")[0] == 404
    page.goto(dashboard.origin + "/bindingsets/counter-bindings")
    assert COUNTER in page.locator("#manifest pre").inner_text()
    assert page.locator("#history tr[data-revision]").count() >= 1


def test_keyboard_reaches_every_deployment_link(page: Page, dashboard: Dashboard) -> None:
    synced_overview(page, dashboard)
    wanted = {f"/deployments/{n}" for n in DEPLOYMENTS}
    reached: dict[str, str] = {}
    for _ in range(100):  # Tab stops before the last deployment link, at most
        page.keyboard.press("Tab")
        href, outline = page.evaluate("""() => { const a = document.activeElement;
            const s = getComputedStyle(a);
            return [a.getAttribute('href'), s.outlineStyle + ' ' + s.outlineWidth + ' '
                    + s.boxShadow]; }""")
        if href in wanted:
            reached[href] = outline
        if set(reached) == wanted:
            break
    assert set(reached) == wanted, reached
    for href, outline in reached.items():  # a visible focus indicator
        style, width, *shadow = outline.split(" ", 2)
        assert (style != "none" and width != "0px") or shadow != ["none"], (href, outline)


@pytest.mark.parametrize("path", ["/", "/lattice", "/deployments/counter"])
def test_phone_width_has_no_horizontal_scroll(browser: Browser, dashboard: Dashboard,
                                              path: str) -> None:
    ctx = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True,
                              has_touch=True, device_scale_factor=2)
    try:
        page = ctx.new_page()
        page.goto(dashboard.origin + path)
        page.wait_for_selector("main#main")
        inner, scroll, client = page.evaluate("""() => [window.innerWidth,
            document.documentElement.scrollWidth, document.documentElement.clientWidth]""")
        assert inner == 375, f"layout viewport {inner} px: no width=device-width meta?"
        assert scroll <= client, f"{path}: content {scroll} px wide in {client} px"
    finally:
        ctx.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phase_badges_pass_wcag_aa(page: Page, dashboard: Dashboard, scheme: str) -> None:
    page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    synced_overview(page, dashboard)
    # every phase's badge, in the cell where the overview shows it
    page.evaluate("""(phases) => { const cell = document.querySelector(
        '#deployments td.phase');
        for (const p of phases) { const s = document.createElement('span');
          s.className = 'phase phase-' + p.toLowerCase(); s.textContent = p;
          s.dataset.test = '1'; cell.appendChild(s); } }""", [p.value for p in Phase])
    failing = []
    for badge in page.locator("td.phase span.phase").all():
        c = badge.evaluate(CONTRAST)
        if c["ratio"] < 4.5:
            failing.append(c)
    assert not failing, f"{scheme}: phase badges below 4.5:1: {failing}"
    failing = []
    for el in page.locator("main :is(td, th, a, dt, dd, h1, h2, h3, p, caption)").all():
        c = el.evaluate(CONTRAST)
        if c["text"] and c["ratio"] < (3.0 if c["large"] else 4.5):
            failing.append(c)
    assert not failing, f"{scheme}: overview text below WCAG AA: {failing[:5]}"


def test_nothing_comes_from_another_origin(browser: Browser, dashboard: Dashboard) -> None:
    ctx = browser.new_context()
    requests: list[str] = []
    ctx.on("request", lambda r: requests.append(r.url))
    try:
        page = ctx.new_page()
        for path in ("/", "/lattice", "/deployments/counter", "/events"):
            page.goto(dashboard.origin + path, wait_until="load")
    finally:
        ctx.close()
    foreign = [u for u in requests if not u.startswith(dashboard.origin + "/")
               and not u.startswith(("data:", "blob:"))]
    assert not foreign, foreign
    statics = sorted({u for u in requests if "/static/" in u})
    assert statics, "no /static/ file requested: where are the script and the styles?"
    for path in ("/", "/lattice", "/deployments/counter"):
        statics += [dashboard.origin + s for s in re.findall(
            r'(?:src|href)="(/static/[^"]+)"', fetch(dashboard.origin + path)[2])]
    for url in sorted(set(statics)):
        status, _, body = fetch(url)
        assert status == 200, url
        for ns in NAMESPACES:
            body = body.replace(ns, "")
        external = [m for m in re.findall(r"https?://[^\s\"'<>)`]+", body)
                    if not m.startswith(dashboard.origin)]
        assert not external, f"{url} names other origins: {external[:5]}"


def test_the_server_is_read_only(dashboard: Dashboard) -> None:
    for path in ("/", "/deployments/counter", "/lattice", "/stream"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            status = fetch(dashboard.origin + path, method)[0]
            assert status in (403, 404, 405), (method, path, status)
    html = fetch(dashboard.url)[2]
    assert not re.search(r"<form[^>]*method=\"?post", html, re.I)
