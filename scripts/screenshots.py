"""The README's dashboard screenshots (issue 18): docs/img/dashboard-overview.png and
docs/img/dashboard-lattice.png, taken from a real lattice.

Starts ``latticectl up --detach`` (nats-server, four hosts in zones a and b, host-0 with
``leds=12``, the agent on a git copy of examples/repo) in a temporary state dir, adds the
``logbook`` deployment (the host log provider) with ``latticectl apply``, starts
``latticectl dashboard --no-browser`` on it, waits until every deployment shows Synced,
and saves the overview and the lattice picture as rendered by Debian's chromium (through
Playwright; nothing is downloaded). Everything started is stopped again (``down``; the
dashboard by SIGINT to its pid).

    .venv/bin/python scripts/screenshots.py [--out docs/img] [--width 1280]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.browser.stack import start_dashboard, start_lattice  # noqa: E402

LABELS = ("0:leds=12", "0:zone=a", "1:zone=a", "2:zone=b", "3:zone=b")
LOGBOOK = """apiVersion: vinculum.io/v1
kind: Deployment
metadata:
  name: logbook
  labels:
    app: logbook
spec:
  providers:
    - id: wascc:logging
      binding_name: default
      vendor_id: default
"""
DEPLOYMENTS = ("amazing-deployment", "counter", "logbook")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=800)
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("no chromium on PATH (Debian: apt-get install chromium)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vinculum-shots-") as tmp:
        lat = start_lattice(Path(tmp), lattice="demo", hosts=4, labels=LABELS)
        dash = None
        try:
            res = lat.ctl("apply", "-f", "-", "--wait", "--timeout", "90s", stdin=LOGBOOK)
            if res.returncode != 0:
                raise RuntimeError(f"apply failed: {res.stdout}{res.stderr}")
            dash = start_dashboard(["--state-dir", str(lat.state_dir)], lat.env,
                                   Path(tmp) / "dashboard")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, headless=True)
                try:
                    page = browser.new_page(viewport={"width": args.width,
                                                      "height": args.height})
                    page.goto(dash.url)
                    for name in DEPLOYMENTS:
                        page.wait_for_selector(f'#deployment-{name}[data-phase="Synced"]',
                                               timeout=90_000)
                    page.screenshot(path=str(args.out / "dashboard-overview.png"),
                                    full_page=True)
                    page.goto(dash.origin + "/lattice")
                    page.wait_for_function("""() => document.querySelectorAll(
                        'article.host[data-state="up"]').length === 4""", timeout=90_000)
                    page.screenshot(path=str(args.out / "dashboard-lattice.png"),
                                    full_page=True)
                finally:
                    browser.close()
        finally:
            if dash is not None:
                dash.stop()
            lat.down()
    for name in ("dashboard-overview.png", "dashboard-lattice.png"):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
