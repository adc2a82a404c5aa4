"""CLI start-up benchmark: how long ``latticectl --version`` and ``--help`` take.

Each command runs ``--runs`` times as a fresh process (``python -m cli.main ...``, what the
``latticectl`` entry point runs), alternating with ``python -c pass`` (the interpreter
alone); the median wall time of each and its ratio to the bare interpreter are printed
and appended to RESULTS.md. Target (issue 17): ≤ 100 ms for ``--version`` and ``--help``.

    python bench/bench_cli_startup.py [--runs 20] [--label TEXT] [--no-record]
                                      [--results FILE]

To compare with an older commit, run this script from an export of it (``git archive SHA |
tar -x -C DIR``, then ``python DIR/bench/bench_cli_startup.py --results bench/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.benchlib import (  # noqa: E402
    command_line,
    heading,
    load1,
    machine,
    record,
    record_options,
)

TARGET_MS = 100.0
#: the children may write .pyc files (the warm-up run does): what an installed CLI has
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "latticectl --version": [sys.executable, "-m", "cli.main", "--version"],
    "latticectl --help": [sys.executable, "-m", "cli.main", "--help"],
}


def once(argv: list[str]) -> tuple[float, float]:
    """(wall ms, CPU ms: user + system) of one run of ``argv``, which must exit 0. CPU time
    says what the program costs even when a loaded machine stretches the wall time."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, env=ENV)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - started) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def measure(runs: int) -> dict[str, list[tuple[float, float]]]:
    """``runs`` timings of each command, interleaved so load drifts hit all alike."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():
        once(argv)  # warm the page cache and .pyc files; not counted
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            times[name].append(once(argv))
    return times


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--label", default="", help="added to the heading (e.g. before: SHA)")
    record_options(parser)
    args = parser.parse_args(argv)
    load_before = load1()
    times = measure(args.runs)
    base = statistics.median(w for w, _ in times["python -c pass"])
    title = "CLI start-up: latticectl --version and --help"
    lines = [heading(f"{title} ({args.label})" if args.label else title),
             f"- machine: {machine()} (load before the run {load_before:.2f})",
             f"- command: `{command_line('bench_cli_startup.py', argv)}`"]
    for name, pairs in times.items():
        walls = [w for w, _ in pairs]
        med, cpu = statistics.median(walls), statistics.median(c for _, c in pairs)
        extra = "" if name.startswith("python") else (
            f", {med / base:.2f}x python -c pass, {med - base:.1f} ms over it; target ≤ "
            f"{TARGET_MS:.0f} ms: {'met' if med <= TARGET_MS else 'NOT met'}")
        lines.append(f"- `{name}`: median {med:.1f} ms wall of {len(walls)} runs (min "
                     f"{min(walls):.1f}, max {max(walls):.1f}), median CPU {cpu:.1f} ms"
                     f"{extra}")
    print("\n".join(lines))
    if not args.no_record:
        record(lines, args.results)


if __name__ == "__main__":
    main()
