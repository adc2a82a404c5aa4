"""Smoke test of bench/bench_commit_to_note.py at a tiny size (the numbers are not judged
here: a loaded CI machine is no place for latency targets; bench/RESULTS.md is)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_commit_to_note_runs_and_records(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_commit_to_note.py"), "-n", "3",
         "--results", str(results)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = results.read_text()
    assert text.startswith("# Benchmark results")
    assert "- commits: 3" in text and "from `git commit` start: p50" in text
    assert "machine: " in text and "command: `python " in text
