"""Run a module under tracemalloc and write its biggest allocations on SIGUSR1 and at exit.

A measuring aid for the scale benchmark (what holds the agent's memory at 10,000 hosts):
``BENCH_AGENT_TRACEMALLOC=FILE python bench/bench_scale.py ...`` starts the agent as
``python bench/tracemalloc_run.py FILE -m reconciler.main ...``; each SIGUSR1 (the benchmark
sends one at Synced) and the exit append to FILE the traced total, its peak, and the 40
biggest allocation sites (by file and line). Tracing slows the agent down
(about 2x): its timings are not the benchmark's.

    python bench/tracemalloc_run.py /tmp/agent.mem -m reconciler.main --repo ...
"""

from __future__ import annotations

import atexit
import os
import runpy
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
#: frames kept per allocation (BENCH_TRACEMALLOC_DEPTH; more: slower, and attributed to
#: this project's code as well as by the allocating line)
DEPTH = int(os.environ.get("BENCH_TRACEMALLOC_DEPTH", "1"))


def dump(path: str, why: str) -> None:
    snap = tracemalloc.take_snapshot()  # (filter_traces would take minutes)
    size, peak = tracemalloc.get_traced_memory()
    lines = [f"== {why} at {time.strftime('%H:%M:%S')}: traced {size / 2**20:.1f} MiB, "
             f"peak {peak / 2**20:.1f} MiB"]
    for stat in snap.statistics("lineno")[:40]:
        frame = stat.traceback[0]
        lines.append(f"{stat.size / 2**20:8.1f} MiB {stat.count:9d} "
                     f"{frame.filename}:{frame.lineno}")
    if DEPTH > 1:  # the same memory by the innermost line of this project that made it
        ours: dict[str, list[int]] = {}
        for trace in snap.traces:
            site = next((f"{f.filename.removeprefix(str(ROOT))}:{f.lineno}"
                         for f in trace.traceback if f.filename.startswith(str(ROOT))
                         and "/.venv/" not in f.filename), "(elsewhere)")
            n = ours.setdefault(site, [0, 0])
            n[0] += trace.size
            n[1] += 1
        lines.append("-- by the innermost line of this project:")
        for site, (size, count) in sorted(ours.items(), key=lambda kv: -kv[1][0])[:40]:
            lines.append(f"{size / 2**20:8.1f} MiB {count:9d} {site}")
    with open(path, "a") as f:
        f.write("\n".join(lines) + "\n")


def main() -> None:
    path, flag, module, *rest = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: tracemalloc_run.py FILE -m MODULE [ARGS...]")
    tracemalloc.start(DEPTH)

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        dump(path, "SIGUSR1")

    signal.signal(signal.SIGUSR1, on_signal)
    atexit.register(dump, path, "exit")
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
