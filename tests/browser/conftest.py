"""Fixtures of the browser tests (issue 18): Debian's chromium driven by Playwright, a real
lattice (``latticectl up --detach``) and the ``latticectl dashboard`` serving it.

The lattice and the dashboard are module-scoped: each test file gets its own, shared by its
tests in file order (``scripts/test.sh`` hands whole files to a worker). The browser is
the system's ``chromium`` (``apt-get install chromium``; ``.ci/run`` installs it); no
browser is ever downloaded. Without it the browser tests skip on a developer's machine and
FAIL in CI (the ``CI`` environment variable set), so a CI machine cannot pass them silently.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.stack import Dashboard, Lattice, start_dashboard, start_lattice

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

#: how long a test waits for the page to show something that depends on the lattice
#: (a status commit, a host lost); generous: 2 cores, 4 test workers
WAIT_MS = 60_000


def missing(what: str) -> None:
    """Skip on a developer's machine, fail in CI (``CI`` set), for want of ``what``."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI is set: the browser tests must run; .ci/run installs "
                    "chromium with apt-get)", pytrace=False)
    pytest.skip(f"{what}; the browser tests need Debian's chromium (apt-get install "
                "chromium) and the playwright package; in CI this is a failure")


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        missing("no `chromium` on PATH")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("the playwright package is not installed")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    """Headless chromium (Playwright passes --no-sandbox itself when run as root)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context and page per test (no shared cookies, cache or scripts)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


@pytest.fixture(scope="module")
def lattice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lattice]:
    """nats-server, three hosts (zones a, a, b; host-0 has leds=12) and the agent on a git
    copy of examples/repo, stopped by ``latticectl down``."""
    lat = start_lattice(tmp_path_factory.mktemp("dash"))
    try:
        yield lat
    finally:
        lat.down()


@pytest.fixture(scope="module")
def dashboard(lattice: Lattice) -> Iterator[Dashboard]:
    """``latticectl --state-dir STATE dashboard --no-browser --addr 127.0.0.1:0``, stopped
    by SIGINT to its pid; it must exit 0."""
    dash = start_dashboard(["--state-dir", str(lattice.state_dir)], lattice.env,
                           Path(lattice.state_dir) / "logs")
    try:
        yield dash
    finally:
        code = dash.stop()
        assert code == 0, f"dashboard exited {code}: {dash.log.read_text(errors='replace')}"
