"""Dashboard benchmark (issue 18): page load and live-update latency of ``latticectl
dashboard`` on a lattice of 1,000 deployments on 100 hosts.

The lattice is bench_scale's: a real nats-server, the hosts run by bench/hostswarm.py (the
real :class:`hostagent.host.Host`, in-memory runtime, one NATS connection each), the agent
as a process on a local repository whose first commit holds the M deployments (one actor
replica each); once that commit's note and the status branch say Synced, the real
``latticectl dashboard`` process is started on it (``--repo``, ``--nats-url``,
``--lattice``), and measured with Debian's chromium through Playwright:

* plain HTTP ``GET /`` (urllib, the server-rendered overview as the dashboard pages it):
  wall time to the last byte, ``--runs`` times;
* first paint of ``/`` in a fresh browser context each run: the navigation timing entry
  (response start, DOMContentLoaded, load event end) and the paint timing's
  ``first-contentful-paint``, all from navigation start; beside it the same HTML answered
  from memory by Playwright (the browser's share) and a one-line page (a fresh context's
  fixed cost on this machine at this load);
* an update on screen: with ``/`` open, ``--updates`` commits alternately make deployment
  app-00000 unplaceable (an affinity no host has: Degraded) and placeable again (Synced).
  A thread stats the status branch's ref file every 5 ms and keeps each value with the
  file's mtime (when git wrote it); a MutationObserver in the page notes ``Date.now()`` when
  the row's ``data-phase`` changes. Latency = the page's time of a phase minus the time of
  the first status commit giving the row that phase (per phase of each round). A
  MutationObserver fires before the next paint: the frame is on screen ≤ 1 frame later.
  Each update is split into stages: status commit → the server announces the change on
  ``/stream`` (a second EventSource in the page) → the deployments fragment received
  (resource timing) → the row changed.

Targets: first paint ≤ 300 ms, update on screen ≤ 1 s after the status commit.

    python bench/bench_dashboard.py [--hosts 100] [--deployments 1000] [--runs 10]
        [--updates 6] [--no-record] [--results FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from bench.bench_commit_to_synced import wait_synced  # noqa: E402
from bench.bench_scale import (  # noqa: E402
    LATTICE,
    deployment,
    git,
    init_repo,
    raise_nofile,
    start_swarms,
    stop_swarms,
    wait_status_synced,
)
from bench.benchlib import (  # noqa: E402
    load1,
    percentile,
    record_run,
    spawn_agent,
    summary,
    verdict,
)
from lattice.localnats import NatsServer  # noqa: E402
from lattice.natsutil import connect  # noqa: E402
from tests.browser.pagejs import WATCH_PHASE  # noqa: E402
from tests.browser.stack import (  # noqa: E402
    Dashboard,
    RefWatch,
    process_env,
    start_dashboard,
    status_phase,
)
from tests.hostproc import ping  # noqa: E402

TARGET_PAINT_MS, TARGET_UPDATE_MS = 300.0, 1000.0
WATCHED = "app-00000"
TRIVIAL = "<!doctype html><title>floor</title><p>one line of text</p>"
NAV = """() => { const n = performance.getEntriesByType('navigation')[0];
  const f = performance.getEntriesByName('first-contentful-paint')[0];
  return {response: n.responseStart - n.startTime, dcl: n.domContentLoadedEventEnd - n.startTime,
          load: n.loadEventEnd - n.startTime, fcp: f ? f.startTime : null,
          bytes: n.transferSize}; }"""


async def lattice_up(args: argparse.Namespace, url: str, tmp: Path) -> tuple[Any, Path, str]:
    """The hosts answering, a repository with M deployments, the agent Synced on it and
    the status branch saying so: (agent, repo, sha)."""
    nc = await connect(url)
    try:
        found = await ping(nc, LATTICE, timeout=5.0 + args.hosts / 1000, expect=args.hosts)
        if len(found) != args.hosts:
            raise RuntimeError(f"{len(found)} of {args.hosts} hosts answered a ping")
    finally:
        await nc.close()
    repo = tmp / "repo"
    init_repo(repo)
    deps = repo / "deployments"
    deps.mkdir()
    for k in range(args.deployments):
        (deps / f"app-{k:05d}.yaml").write_text(deployment(k))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{args.deployments} deployments")
    sha = git(repo, "rev-parse", "HEAD")
    agent = spawn_agent(repo=repo, nats_url=url, lattice=LATTICE, data_dir=tmp / "agent",
                        resync=30.0)
    t0 = time.monotonic()
    await wait_synced(repo, sha, args.timeout)
    if await wait_status_synced(repo, sha, args.timeout) is None:
        raise RuntimeError("the status branch never said Synced")
    print(f"{args.hosts} hosts x {args.deployments} deployments Synced in "
          f"{time.monotonic() - t0:.1f} s", flush=True)
    return agent, repo, sha


def wait_rows(url: str, row_id: str, timeout: float) -> int:
    """GET ``url`` until its HTML has the row ``row_id`` (the dashboard read the status
    branch, which it reads whole); the number of GETs it took."""
    deadline = time.monotonic() + timeout
    gets = 0
    while True:
        gets += 1
        with urllib.request.urlopen(url, timeout=60) as res:
            if f'id="{row_id}"' in res.read().decode():
                return gets
        if time.monotonic() > deadline:
            raise RuntimeError(f"no row {row_id} at {url} within {timeout:g} s")
        time.sleep(0.05)  # a poll interval of the deadline loop above


def http_get(url: str, runs: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as res:
            size = len(res.read())
        times.append((time.perf_counter() - t) * 1000)
    return times, size


def first_paint(browser: Any, url: str, runs: int, html: str | None = None
                ) -> list[dict[str, float]]:
    """Navigation and paint timings of ``url`` in a fresh context per run; with ``html``,
    the page itself is answered from memory by Playwright (its /static/ files still come
    from the server): the browser's share alone, for the same document."""
    out = []
    for _ in range(runs):
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            if html is not None:
                ctx.route(url, lambda route: route.fulfill(
                    status=200, body=html, content_type="text/html; charset=utf-8"))
            page = ctx.new_page()
            page.goto(url, wait_until="load")
            page.wait_for_function(
                "() => performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
            with contextlib.suppress(PlaywrightTimeout):  # a page that never paints: null
                page.wait_for_function("() => performance.getEntriesByName("
                                       "'first-contentful-paint').length > 0", timeout=10_000)
            out.append(page.evaluate(NAV))
        finally:
            ctx.close()
    return out


#: In the page: a second event stream noting when the server announces a change, and the
#: times (epoch ms) of the fragment fetches the page's script made.
SPY = """() => { window.__sse = [];
  const es = new EventSource('/stream?v=' + document.body.dataset.version);
  es.addEventListener('change', (e) => window.__sse.push([Date.now(), e.data])); }"""
FETCHES = """() => performance.getEntriesByType('resource')
  .filter((e) => e.name.includes('/fragment/deployments'))
  .map((e) => [performance.timeOrigin + e.startTime, performance.timeOrigin + e.responseEnd])"""


def stages(written: float, shown: float, sse: list[Any], fetches: list[Any]
           ) -> tuple[float, float, float] | None:
    """(status commit → change announced, → fragment received, → row changed in the
    DOM), ms, for one update; None when a stage is missing."""
    announced = next((t / 1000 for t, data in sse
                      if t / 1000 >= written and "deployments" in data), None)
    if announced is None:
        return None
    got = next((end / 1000 for start, end in fetches
                if start / 1000 >= announced - 0.05 and end / 1000 <= shown + 0.001), None)
    if got is None:
        return None
    return ((announced - written) * 1000, (got - announced) * 1000, (shown - got) * 1000)


def updates(browser: Any, dash: Dashboard, repo: Path, n: int
            ) -> tuple[list[tuple[str, float]], list[tuple[float, float, float]]]:
    """(phase, ms from its status commit to the page) per phase change, over ``n``
    commits that flip app-00000 between Degraded and Synced; and each one's stages."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    out: list[tuple[str, float]] = []
    parts: list[tuple[float, float, float]] = []
    try:
        page = ctx.new_page()
        page.goto(dash.url, wait_until="load")
        page.wait_for_selector(f'#deployment-{WATCHED}[data-phase="Synced"]', timeout=60_000)
        page.evaluate("window.__marker = 1")
        page.evaluate(WATCH_PHASE, f"deployment-{WATCHED}")
        page.evaluate(SPY)
        path = repo / "deployments" / f"{WATCHED}.yaml"
        for i in range(n):
            want = "Degraded" if i % 2 == 0 else "Synced"
            text = deployment(0) + ('      affinity_rules: ["gpu=yes"]\n'
                                    if want == "Degraded" else "")
            seen = len(page.evaluate("window.__phases"))
            with RefWatch(repo) as watch:
                path.write_text(text)
                git(repo, "commit", "-q", "-am", f"{WATCHED}: {want} expected")
                page.wait_for_selector(f'#deployment-{WATCHED}[data-phase="{want}"]',
                                       timeout=60_000)
            written: dict[str, float] = {}
            for sha, t in watch.seen:
                phase = status_phase(repo, sha, "deployments", WATCHED)
                if phase is not None:
                    written.setdefault(phase, t)
            shown: dict[str, float] = {}
            for phase, t in page.evaluate("window.__phases")[seen:]:
                shown.setdefault(phase, t / 1000)
            sse, fetches = page.evaluate("window.__sse"), page.evaluate(FETCHES)
            for phase, t in shown.items():
                if phase in written:
                    out.append((phase, (t - written[phase]) * 1000))
                    split = stages(written[phase], t, sse, fetches)
                    if split is not None:
                        parts.append(split)
            print(f"round {i + 1}: written {written}, shown {shown}", flush=True)
        if page.evaluate("window.__marker") != 1:
            raise RuntimeError("the page reloaded during the updates")
    finally:
        ctx.close()
    return out, parts


def code_version() -> str:
    """The commit of cli/dashboard/ measured, and whether the tree differed from it."""
    sha = git(ROOT, "log", "-1", "--format=%h", "--", "cli/dashboard")
    dirty = git(ROOT, "status", "--porcelain", "--", "cli/dashboard")
    return f"cli/dashboard/ at {sha}" + (" with uncommitted changes" if dirty else "")


def measure(args: argparse.Namespace, tmp: Path) -> list[str]:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("no chromium on PATH (Debian: apt-get install chromium)")

    server = NatsServer(data_dir=tmp / "nats")
    server.start()
    swarms = []
    agent = None
    dash = None
    try:
        swarms = start_swarms([server.url], args.hosts, 250, tmp, args.heartbeat)
        deadline = time.monotonic() + 60 + args.hosts * 0.2
        while not all(r.exists() for _, r in swarms):  # each swarm writes its ready file
            if time.monotonic() > deadline or any(p.poll() is not None for p, _ in swarms):
                raise RuntimeError(f"hosts did not start; see {tmp}/swarm-*.log")
            time.sleep(0.1)
        agent, repo, _ = asyncio.run(lattice_up(args, server.url, tmp))
        t = time.monotonic()
        dash = start_dashboard(["--repo", str(repo), "--nats-url", server.url, "--lattice",
                                LATTICE], process_env(tmp), tmp / "dashboard")
        started = (time.monotonic() - t) * 1000
        ready = wait_rows(dash.url, f"deployment-{WATCHED}", 120.0)
        ready_ms = (time.monotonic() - t) * 1000
        print(f"dashboard URL after {started:.0f} ms, the status shown after "
              f"{ready_ms:.0f} ms ({ready} GETs)", flush=True)
        load = load1()
        get_ms, size = http_get(dash.url, args.runs)
        with urllib.request.urlopen(dash.url, timeout=60) as res:
            html = res.read().decode()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True)
            try:
                paints = first_paint(browser, dash.url, args.runs)
                floor = first_paint(browser, dash.url, args.runs, html)
                trivial = first_paint(browser, dash.url, args.runs, TRIVIAL)
                changes, parts = updates(browser, dash, repo, args.updates)
            finally:
                browser.close()
    finally:
        if dash is not None:
            dash.stop()
        if agent is not None and agent.alive():
            agent.stop(30)
        stop_swarms(swarms)
        server.stop()
    fcp = [p["fcp"] for p in paints if p["fcp"] is not None]
    loads = [p["load"] for p in paints]
    lat = [ms for _, ms in changes]
    paint_p50 = percentile(fcp, 50)  # as summary() reports it
    return [
        f"- dashboard: {code_version()}",
        f"- lattice: {args.hosts} hosts (hostswarm, heartbeat {args.heartbeat:g} s), "
        f"{args.deployments} deployments of one actor replica, the agent Synced; dashboard "
        f"printed its URL {started:.0f} ms after start, showed the status (a row of "
        f"{WATCHED}) {ready_ms:.0f} ms after start (measured from then on); load when "
        f"measuring {load:.2f}",
        f"- HTTP GET / ({size / 1024:.0f} KiB): {summary(get_ms)}",
        f"- browser, / in a fresh context ({args.runs} runs): first contentful paint "
        f"{summary(fcp)}; load event {summary(loads)}; response start "
        f"{summary([p['response'] for p in paints])}",
        f"- the same HTML answered from memory by Playwright (the browser's share): first "
        f"contentful paint {summary([p['fcp'] for p in floor if p['fcp'] is not None])}; "
        f"load event {summary([p['load'] for p in floor])}",
        f"- a one-line page answered the same way (a fresh context's fixed cost at this "
        f"load): first contentful paint "
        f"{summary([p['fcp'] for p in trivial if p['fcp'] is not None])}",
        f"- first paint p50 {paint_p50:.0f} ms: {verdict(paint_p50, TARGET_PAINT_MS)}",
        f"- update on screen after the status commit ({args.updates} commits flipping "
        f"{WATCHED} Degraded/Synced, per phase shown): {summary(lat)}; "
        + "; ".join(f"{p} {ms:.0f} ms" for p, ms in changes),
        "- update stages (status commit → the server announces the change on /stream → "
        "the deployments fragment received → the row changed in the DOM), p50: "
        + (" → ".join(f"{percentile(x, 50):.0f} ms" for x in zip(*parts, strict=True))
           if parts else "not measured") + f" (n={len(parts)})",
        f"- update max {max(lat) if lat else float('nan'):.0f} ms: "
        f"{verdict(max(lat) if lat else float('inf'), TARGET_UPDATE_MS)}",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--deployments", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=10, help="page loads measured")
    ap.add_argument("--updates", type=int, default=6, help="commits whose update is timed")
    ap.add_argument("--heartbeat", type=float, default=5.0, help="hosts' heartbeat, s")
    ap.add_argument("--timeout", type=float, default=300.0, help="to Synced, s")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--results", type=Path, default=None, help="append here instead")
    args = ap.parse_args(argv)
    raise_nofile()
    before = load1()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        lines = measure(args, Path(tmp))
    print("\n".join(lines))
    record_run(args, argv, f"dashboard, {args.deployments} deployments on {args.hosts} "
               "hosts: first paint and update latency", "bench_dashboard.py", before, lines)


if __name__ == "__main__":
    main()
