"""Status writer benchmark (issue 15 §4): render and commit a status report of N
deployments and N hosts with :class:`gitsync.status.StatusWriter`, three times.

* **first**: the first status commit on a fresh repository (every file new);
* **revision**: the same report with every deployment's ``revision`` changed (every
  deployment file new, hosts unchanged but for ``last_seen``);
* **one**: one deployment changed.

Prints wall time per write, the objects the repository gained (loose and packed), and the
process's RSS (now and peak), with the load average. Run one N per process so the peak
RSS is that N's: ``python bench/bench_status_writer.py --n 10000``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.benchlib import status_report  # noqa: E402
from gitsync.source import GitSource  # noqa: E402
from gitsync.status import StatusWriter  # noqa: E402
from lattice.status import StatusReport  # noqa: E402

NOW = datetime.now(UTC)


def report(n: int, rev: str, *, bump: int = -1) -> StatusReport:
    """The status of ``n`` one-actor deployments on ``n`` hosts, the hosts' ``last_seen``
    and the summary read from the clock (as the agent's reports are)."""
    return status_report(n, rev, bump=bump, hosts=n, provider=False, now=NOW,
                         seen=lambda: datetime.now(UTC))


def rss_mb() -> tuple[float, float]:
    with open("/proc/self/statm") as f:
        now = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return now, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def objects(git_dir: str) -> int:
    out = subprocess.run(["git", f"--git-dir={git_dir}", "count-objects", "-v"],
                         check=True, capture_output=True, text=True).stdout
    f = dict(line.split(": ") for line in out.splitlines())
    return int(f["count"]) + int(f["in-pack"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--trace", action="store_true",
                    help="also the Python allocation peak of each write (tracemalloc: slower)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
        subprocess.run(["git", "init", "-q", "--initial-branch=main", str(repo)], check=True)
        (repo / "a.yaml").write_text("x: 1\n")
        subprocess.run(["git", "-C", str(repo), "add", "a.yaml"], check=True, env=env)
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@x",
                        "commit", "-qm", "one"], check=True, env=env)
        source = GitSource.open(str(repo), data_dir=Path(tmp) / "data")
        writer = StatusWriter(source, min_interval=0.0)
        git_dir = str(source.git_dir)
        print(f"N={args.n} deployments and hosts; load {os.getloadavg()[0]:.2f}; "
              f"RSS before {rss_mb()[0]:.0f} MB")
        steps = [("first", "a", -1), ("revision", "b", -1), ("one", "b", 7)]
        for label, rev, bump in steps:
            rep = report(args.n, rev * 40, bump=bump)
            before = objects(git_dir)
            if args.trace:
                tracemalloc.start()
            t = time.perf_counter()
            writer.publish(rep)
            writer.flush()
            took = time.perf_counter() - t
            traced = ""
            if args.trace:
                traced = f"  allocation peak {tracemalloc.get_traced_memory()[1] / 2**20:.0f} MB"
                tracemalloc.stop()
            del rep
            now, peak = rss_mb()
            print(f"  {label:9s} {took * 1000:8.0f} ms  +{objects(git_dir) - before:6d} objects"
                  f"  RSS {now:.0f} MB (peak {peak:.0f} MB){traced}  load "
                  f"{os.getloadavg()[0]:.2f}")
        writer.close()


if __name__ == "__main__":
    main()
