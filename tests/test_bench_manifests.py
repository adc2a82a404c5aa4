"""Smoke test of bench/bench_manifests.py at its smallest size (the figures are not
judged here; bench/RESULTS.md is the place for them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_bench_smoke import run_bench

pytestmark = pytest.mark.e2e


def test_bench_manifests_smallest(tmp_path: Path) -> None:
    text = run_bench("bench_manifests.py", tmp_path, "--files", "20", "--repeat", "1")
    assert "manifests: loading 20 files from git" in text
    assert "one `git cat-file --batch`" in text and "parse_file of every file" in text
