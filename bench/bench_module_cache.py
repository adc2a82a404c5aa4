"""Compiled-module cache benchmark: what a host restart saves by keeping compiled code.

A synthetic module of ``--functions`` small functions (about 880 KB at the default 20,000,
the size of a modest Rust actor) is made ready by a fresh
:class:`hostagent.wasm.modules.ModuleCache` three ways, as ``lattice-host`` does: without a
cache dir (``--no-cache``: a bounded compile in a child process), with an empty cache dir
(the first start: compile and keep), and with the cache dir the previous one filled (every
later start: load the serialised module). No NATS.

    python bench/bench_module_cache.py [--functions 20000] [--repeat 3] [--no-record]
                                       [--results FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import wasmtime  # noqa: E402

from bench.benchlib import RESULTS, command_line, heading, machine, record  # noqa: E402
from hostagent.wasm.engine import new_engine  # noqa: E402
from hostagent.wasm.modules import ModuleCache  # noqa: E402


def synthetic_module(functions: int) -> bytes:
    """A valid module of ``functions`` distinct functions with a branch each."""
    body = "\n".join(
        f"(func $f{i} (param i32) (result i32) local.get 0 i32.const {i} i32.add"
        f" i32.const 3 i32.mul local.get 0 i32.xor (if (result i32) (i32.gt_u"
        f" (local.get 0) (i32.const {i})) (then (i32.const {i})) (else (i32.const {i + 1})))"
        f" i32.add)"
        for i in range(functions))
    return bytes(wasmtime.wat2wasm(f'(module (memory (export "memory") 1) {body})'))


def compile_ms(wasm: bytes, cache_dir: Path | None) -> float:
    """Wall time of a fresh module cache making ``wasm`` ready (as a restarted host)."""
    cache = ModuleCache(new_engine(), cache_dir=cache_dir)
    started = time.perf_counter()
    asyncio.run(cache.get(wasm))
    return (time.perf_counter() - started) * 1000


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--functions", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--results", type=Path, default=RESULTS, help="append here instead")
    args = ap.parse_args(argv)
    wasm = synthetic_module(args.functions)
    none, cold, warm = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="wasm-cache-", ignore_cleanup_errors=True) as tmp:
            none.append(compile_ms(wasm, None))
            cold.append(compile_ms(wasm, Path(tmp)))
            warm.append(compile_ms(wasm, Path(tmp)))
    out = {"none": statistics.median(none), "cold": statistics.median(cold),
           "warm": statistics.median(warm)}
    lines = [
        heading("compiled-module cache (a host restart)"),
        f"- machine: {machine()}",
        f"- command: `{command_line('bench_module_cache.py', argv)}`",
        f"- module: {args.functions} functions, {len(wasm)} bytes; medians of {args.repeat}",
        f"- no cache {out['none']:.0f} ms; empty cache dir {out['cold']:.0f} ms; "
        f"filled cache dir {out['warm']:.1f} ms ({out['none'] / out['warm']:.0f}x faster)",
    ]
    print("\n".join(lines))
    if not args.no_record:
        record(lines, args.results)
    return out


if __name__ == "__main__":
    main()
