"""Loading manifests at 10k scale (issue 16): ``--files`` small Deployment files (10,000 by
default, one per file in ``deployments/``, as bench_git.py writes them) committed to a real
git repository, evaluated cold by :meth:`gitsync.source.GitSource.evaluate` (a new
GitSource each run: no tree or blob cache), and the parts of that path timed apart:

* ``git ls-tree -r -l`` of the tree (paths, blob ids, sizes);
* reading the blobs: one ``git cat-file --batch`` for all (``gitsync.gitcmd.cat_blobs``,
  when the tree has it) and, to compare, one GitPython object read per blob;
* :func:`lattice.manifest_loader.parse_file` of every file from memory (YAML compose, the
  hostile-input walks, construction, pydantic validation);
* :func:`lattice.manifest_loader.combine` and the desired state.

CPU time of this process (git's own processes not included; the evaluate line also gives
wall time, which includes them). ``--profile`` prints the top functions of the parse.
Prints the figures and appends them to RESULTS.md like the other scripts in bench/.

    python bench/bench_manifests.py [--files 10000] [--repeat 5] [--profile] [--no-record]
                                    [--results FILE] [--label TEXT]
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_git import make_repo  # noqa: E402
from bench.benchlib import load1, profile_top, record_run  # noqa: E402
from gitsync import gitcmd  # noqa: E402
from gitsync.source import GitSource, manifest_blobs  # noqa: E402
from lattice.manifest_loader import combine, parse_file  # noqa: E402


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU ms, wall ms) of one call."""
    c, w = time.process_time(), time.perf_counter()
    fn()
    return (time.process_time() - c) * 1000, (time.perf_counter() - w) * 1000


def med(runs: Sequence[tuple[float, float]], i: int) -> float:
    return statistics.median(r[i] for r in runs)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="print the parse's top functions")
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--results", type=Path, default=None, help="append here instead")
    ap.add_argument("--label", default="", help="a note for the RESULTS.md heading")
    args = ap.parse_args(argv)
    load_before = load1()
    with tempfile.TemporaryDirectory(prefix="bench-manifests-") as tmp:
        repo = Path(tmp) / "repo"
        make_repo(repo, args.files)
        sources: list[GitSource] = []

        def cold() -> None:
            src = GitSource.open(str(repo), data_dir=Path(tmp) / "data")
            sources.append(src)
            ev = src.evaluate(src.head())
            assert ev.desired is not None and len(ev.desired.deployments) == args.files, \
                ev.errors[:3]

        evaluate = [timed(cold) for _ in range(args.repeat)]
        src = sources[0]
        git_dir = src.git_dir
        tree = str(src.repo.commit(src.head()).tree.hexsha)
        blobs = manifest_blobs(git_dir, tree, "")
        ls_tree = [timed(lambda: manifest_blobs(git_dir, tree, "")) for _ in range(args.repeat)]
        batch_reader = getattr(gitcmd, "cat_blobs", None)
        batched = [timed(lambda: batch_reader(git_dir, [(b.blob, b.size) for b in blobs]))
                   for _ in range(args.repeat)] if batch_reader is not None else []
        odb = src.repo.odb
        one_by_one = [timed(lambda: [odb.stream(bytes.fromhex(b.blob)).read() for b in blobs])
                      for _ in range(args.repeat)]
        contents = [odb.stream(bytes.fromhex(b.blob)).read() for b in blobs]
        pairs = list(zip([b.path for b in blobs], contents, strict=True))
        parsed: list[object] = []

        def parse_all() -> None:
            parsed[:] = [(p, parse_file(p, c)) for p, c in pairs]

        parse = [timed(parse_all) for _ in range(args.repeat)]
        result = [timed(lambda: combine(parsed).desired("x"))  # type: ignore[arg-type]
                  for _ in range(args.repeat)]
        top = ""
        if args.profile:
            prof = cProfile.Profile()
            prof.runcall(parse_all)
            top = profile_top(prof, 15)
            print(top)
        for s in sources:
            s.close()
    out = {"evaluate_cpu_ms": med(evaluate, 0), "evaluate_wall_ms": med(evaluate, 1),
           "ls_tree_ms": med(ls_tree, 1), "one_by_one_ms": med(one_by_one, 1),
           "parse_cpu_ms": med(parse, 0), "combine_cpu_ms": med(result, 0)}
    if batched:
        out["batched_ms"] = med(batched, 1)
    lines = [
        f"- cold evaluate of {args.files} files (new GitSource each run): median "
        f"{out['evaluate_cpu_ms']:.0f} ms CPU, {out['evaluate_wall_ms']:.0f} ms wall over "
        f"{args.repeat} runs (min {min(r[0] for r in evaluate):.0f} ms CPU)",
        f"- `git ls-tree -r -l`: {out['ls_tree_ms']:.0f} ms wall",
        (f"- blob reads, one `git cat-file --batch`: {out['batched_ms']:.0f} ms wall; "
         if batched else "- blob reads: no batched reader in this tree; ") +
        f"one GitPython object read per blob: {out['one_by_one_ms']:.0f} ms wall",
        f"- parse_file of every file from memory: {out['parse_cpu_ms']:.0f} ms CPU "
        f"({out['parse_cpu_ms'] * 1000 / max(1, args.files):.0f} µs a file)",
        f"- combine + desired state: {out['combine_cpu_ms']:.0f} ms CPU",
    ]
    print("\n".join(lines))
    title = f"manifests: loading {args.files} files from git" + (
        f" ({args.label})" if args.label else "")
    record_run(args, argv, title, "bench_manifests.py", load_before, lines)
    return out


if __name__ == "__main__":
    main()
