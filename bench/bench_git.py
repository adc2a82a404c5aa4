"""Git-side benchmark (issue 7, item 5): parsing a big manifest tree and writing status.

In one process, on a fresh repository of ``--files`` manifest files (10,000 by default, one
Deployment each, in ``deployments/``), with the agent's own classes:

* **first parse**: :meth:`gitsync.source.GitSource.evaluate` of the head, cold;
* **unchanged tree**: a new commit whose tree is the same (``--allow-empty``), evaluated:
  the cache keyed by tree id answers;
* **one-file change**: a commit that changes one manifest, evaluated;
* **status write**: :meth:`gitsync.status.StatusWriter.publish` + ``flush`` of a report of
  ``--deployments`` deployments (1,000), first write and after one deployment changed.

Targets: ≤ 5 s, ≤ 20 ms, ≤ 100 ms, ≤ 500 ms. The slowest path is profiled (cProfile, top
functions printed and the headline recorded). Prints figures and appends to RESULTS.md.

    python bench/bench_git.py [--files 10000] [--deployments 1000] [--repeat 5] [--no-record]
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.benchlib import (  # noqa: E402
    BENCH_ACTOR,
    load1,
    profile_headline,
    profile_top,
    record_run,
    status_report,
    verdict,
)
from gitsync.source import GitSource  # noqa: E402
from gitsync.status import StatusWriter  # noqa: E402
from lattice.status import StatusReport  # noqa: E402

ACTOR = BENCH_ACTOR  # the status reports' actor too
TARGETS_MS = {"first": 5000.0, "unchanged": 20.0, "one_file": 100.0, "status": 500.0}


def manifest(i: int, replicas: int = 1) -> str:
    return (f"kind: Deployment\nmetadata:\n  name: app-{i:05d}\n  labels:\n    app: bench\n"
            f"spec:\n  actors:\n    - id: {ACTOR}\n      replicas: {replicas}\n"
            f"  providers:\n    - id: bench:cap{i % 10}\n      vendor_id: v\n"
            f"      affinity_rules: [\"zone=a\"]\n")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(repo: Path, files: int) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "--initial-branch=main")
    for key, value in (("user.name", "bench"), ("user.email", "bench@example.com"),
                       ("commit.gpgsign", "false")):
        git(repo, "config", key, value)
    d = repo / "deployments"
    d.mkdir()
    for i in range(files):
        (d / f"app-{i:05d}.yaml").write_text(manifest(i))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{files} manifests")


#: One clock for every report of a run: as in the agent, which carries ``created``, ``since``
#: and ``last_transition`` over from the previous report, only the bumped deployment changes.
NOW = datetime.now(UTC)


def report(n: int, rev: str, *, bump: int = -1) -> StatusReport:
    """The status of ``n`` deployments with an actor and a provider on 100 hosts; one
    fixed clock (only what a pass changed differs between two reports)."""
    return status_report(n, rev, bump=bump, hosts=min(n, 100), provider=True, now=NOW,
                         seen=lambda: NOW)


def write_status(writer: StatusWriter, rep: StatusReport) -> None:
    """What the agent does after a reconcile, made synchronous: publish, then commit."""
    writer.publish(rep)
    writer.flush()


def ms(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def run(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, float], str, str]:
    repo = tmp / "repo"
    t = time.perf_counter()
    make_repo(repo, args.files)
    setup_s = time.perf_counter() - t
    print(f"repository of {args.files} manifests made in {setup_s:.1f} s")
    source = GitSource.open(str(repo), data_dir=tmp / "data")
    out: dict[str, float] = {}
    head = source.head()
    out["first"] = ms(lambda: source.evaluate(head))
    ev = source.evaluate(head)
    assert ev.desired is not None and len(ev.desired.deployments) == args.files, ev.errors[:3]
    unchanged, one_file = [], []
    for k in range(args.repeat):
        git(repo, "commit", "-q", "--allow-empty", "-m", f"empty {k}")
        sha = source.head()
        unchanged.append(ms(lambda sha=sha: source.evaluate(sha)))  # type: ignore[misc]
        (repo / "deployments" / "app-00000.yaml").write_text(manifest(0, replicas=k + 2))
        git(repo, "commit", "-q", "-am", f"one file {k}")
        sha = source.head()
        one_file.append(ms(lambda sha=sha: source.evaluate(sha)))  # type: ignore[misc]
    out["unchanged"] = statistics.median(unchanged)
    out["one_file"] = statistics.median(one_file)
    writer = StatusWriter(source, min_interval=0.0)
    try:
        rev = source.head()
        first = report(args.deployments, rev)
        out["status"] = ms(lambda: write_status(writer, first))
        steps = []
        for k in range(args.repeat):
            rep = report(args.deployments, rev, bump=k)
            steps.append(ms(lambda rep=rep: write_status(writer, rep)))  # type: ignore[misc]
        out["status_change"] = statistics.median(steps)
    finally:
        writer.close()
        source.close()
    # the two paths that miss their targets at 10,000 files / 1,000 deployments, profiled
    parse_prof = cProfile.Profile()
    (repo / "deployments" / "app-00001.yaml").write_text(manifest(1, replicas=9))
    git(repo, "commit", "-q", "-am", "profiled change")
    src2 = GitSource.open(str(repo), data_dir=tmp / "data2")
    src2.evaluate(git(repo, "rev-parse", "HEAD~1"))
    sha = src2.head()
    parse_prof.enable()
    src2.evaluate(sha)
    parse_prof.disable()
    status_prof = cProfile.Profile()
    writer = StatusWriter(src2, min_interval=0.0)
    try:
        rep = report(args.deployments, sha, bump=args.repeat + 1)
        status_prof.enable()
        writer.publish(rep)
        writer.flush()
        status_prof.disable()
    finally:
        writer.close()
        src2.close()
    return out, profile_top(parse_prof, 16), profile_top(status_prof, 16)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--deployments", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--results", type=Path, default=None, help="append here instead")
    args = ap.parse_args(argv)
    load_before = load1()
    with tempfile.TemporaryDirectory(prefix="bench-git-") as tmp:
        out, parse_prof, status_prof = run(args, Path(tmp))
    lines = [
        f"- first parse of {args.files} files: {out['first']:.0f} ms; "
        f"{verdict(out['first'], TARGETS_MS['first'])}",
        f"- re-parse, unchanged tree (new commit, same tree): median {out['unchanged']:.2f} ms"
        f"; {verdict(out['unchanged'], TARGETS_MS['unchanged'])}",
        f"- parse after a one-file change: median {out['one_file']:.0f} ms; "
        f"{verdict(out['one_file'], TARGETS_MS['one_file'])}",
        f"- status write, {args.deployments} deployments (publish + flush): first "
        f"{out['status']:.0f} ms; {verdict(out['status'], TARGETS_MS['status'])}; "
        f"one deployment changed: median {out['status_change']:.0f} ms",
    ]
    print("\n".join(lines))
    print(f"\nprofile, parse after a one-file change:\n{parse_prof}")
    print(f"\nprofile, status write:\n{status_prof}")
    record_run(args, argv, f"git side, {args.files} manifest files", "bench_git.py",
               load_before,
               [*lines, f"- profiled, one-file change: {profile_headline(parse_prof)}; "
                        f"status write: {profile_headline(status_prof)}"], after=False)
    return out


if __name__ == "__main__":
    main()
