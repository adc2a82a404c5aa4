"""Smoke tests of the end-to-end benchmarks in bench/ at their smallest sizes, so they
cannot rot. Each runs as a process, as a user would, and appends to a temporary results
file (never to bench/RESULTS.md). The figures are not judged: a shared, loaded machine is
no place for latency targets; bench/RESULTS.md is. (bench_commit_to_note has its own, in
tests/test_gitsync_bench.py.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e


def run_bench(script: str, tmp_path: Path, *args: str) -> str:
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--results", str(results)],
        capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    text = results.read_text()
    assert text.startswith("# Benchmark results")
    assert "- machine: " in text and "load " in text
    assert f"- command: `python bench/{script} " in text
    return text


def test_bench_git_smallest(tmp_path: Path) -> None:
    text = run_bench("bench_git.py", tmp_path, "--files", "30", "--deployments", "10",
                     "--repeat", "1")
    assert "first parse of 30 files" in text and "status write, 10 deployments" in text


def test_bench_commit_to_synced_smallest(tmp_path: Path) -> None:
    text = run_bench("bench_commit_to_synced.py", tmp_path, "--commits", "2", "--floor", "2")
    assert "(c) Synced note: p50" in text and "ratio p50(c) / floor" in text
    assert "(n=2)" in text  # every commit reached Synced and was timed


def test_bench_remote_detection_smallest(tmp_path: Path) -> None:
    text = run_bench("bench_remote_detection.py", tmp_path, "--commits", "1", "--ctl", "1",
                     "--no-nudge", "1", "--interval", "0.5")
    assert "push + nudge → seen: p50" in text and "no samples" not in text


def test_bench_webhook_smallest(tmp_path: Path) -> None:
    text = run_bench("bench_webhook.py", tmp_path, "--pushes", "1", "--poll", "1",
                     "--interval", "0.5")
    assert "push + webhook → seen: p50" in text and "no samples" not in text


def test_bench_scale_smallest(tmp_path: Path) -> None:
    text = run_bench("bench_scale.py", tmp_path, "--hosts", "2", "--deployments", "2",
                     "--resync", "0.5", "--resync-window", "1", "--no-plot")
    row = next(line for line in text.splitlines() if line.startswith("| 2 | 2 |"))
    assert "not Synced" not in row
    assert row.split("|")[4].strip() == "2"  # two commands: one start per deployment


def test_bench_module_cache_smallest(tmp_path: Path) -> None:
    text = run_bench("bench_module_cache.py", tmp_path, "--functions", "50", "--repeat", "1")
    assert "filled cache dir" in text and "50 functions" in text


def test_bench_planner_smallest(tmp_path: Path) -> None:
    text = run_bench("bench_planner.py", tmp_path, "--replicas", "40", "--hosts", "8",
                     "--repeat", "1")
    assert "planner, 40 replicas / 8 hosts" in text and "converged plan: median" in text


def test_bench_actor_rps_smallest(tmp_path: Path) -> None:
    text = run_bench("bench_actor_rps.py", tmp_path, "--seconds", "1", "--latency-seconds",
                     "0.5", "--concurrency", "8")
    assert "request → wasm actor → reply, one host" in text
    assert re.search(r"^- one request in flight, 0\.5 s: p50 [\d.]+ ms, p95 [\d.]+ ms, "
                     r"max [\d.]+ ms \(n=\d+\); target ≤ 1 ms: (met|NOT met)$", text, re.M), text
    figures = re.search(r"^- 8 in flight, 1 s: (\d+) req/s \(target ≥ 5000 req/s: "
                        r"(met|NOT met)\), errors (\d+); latency p50 ", text, re.M)
    assert figures and int(figures[1]) > 0 and figures[3] == "0", text


def test_bench_instance_soak_smallest(tmp_path: Path) -> None:
    text = run_bench("bench_instance_soak.py", tmp_path, "-n", "5", "--module", "trap",
                     "--warmup", "1")
    assert "python bench/bench_instance_soak.py -n 5" in text


def test_bench_hostile_smallest(tmp_path: Path) -> None:
    text = run_bench("bench_hostile.py", tmp_path, "--levels", "4", "--fan", "4", "--mb", "2")
    assert "alias bomb refused in" in text and "big file evaluated in" in text


def test_bench_http_rps_smallest(tmp_path: Path) -> None:
    """--actor wat: the project's own test actor, so the smoke needs no fixture."""
    text = run_bench("bench_http_rps.py", tmp_path, "--seconds", "1", "--latency-seconds",
                     "0.5", "--concurrency", "8", "--actor", "wat")
    assert "HTTP request → wascc:http_server → wasm actor → HTTP response" in text
    assert re.search(r"^- one request in flight, 0\.5 s: p50 [\d.]+ ms", text, re.M), text
    figures = re.search(r"^- 8 in flight, 1 s: (\d+) req/s, errors (\d+); ", text, re.M)
    assert figures and int(figures[1]) > 0 and figures[2] == "0", text


def test_bench_dashboard_smallest(tmp_path: Path) -> None:
    if shutil.which("chromium") is None and not os.environ.get("CI"):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    text = run_bench("bench_dashboard.py", tmp_path, "--hosts", "2", "--deployments", "3",
                     "--runs", "1", "--updates", "1")
    assert "first contentful paint p50" in text and "update on screen" in text
