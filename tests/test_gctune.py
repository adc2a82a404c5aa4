"""lattice.gctune: the agent's collector settings take effect (in a child process: the
test process's own collector is left alone)."""

from __future__ import annotations

import subprocess
import sys

from lattice.gctune import THRESHOLDS


def test_tune_sets_the_thresholds_and_freezes_what_is_alive() -> None:
    code = ("import gc; from lattice.gctune import tune_for_large_heaps; "
            "before = gc.get_freeze_count(); tune_for_large_heaps(); "
            "print(gc.get_threshold(), gc.get_freeze_count() > before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == f"{THRESHOLDS} True"
    assert THRESHOLDS[0] > 700  # larger than CPython's default young generation
