"""The garbage collector's settings for a process that holds a large heap: the agent.

CPython collects its youngest generation every 700 net allocations and scans older
generations every 10 collections of the younger. An agent at 10,000 hosts and 10,000
deployments holds a few hundred thousand long-lived objects (inventories, manifests,
status models) and allocates millions in a pass, so collection took most of its time:
planning from empty 0.87 s of CPU, of which 0.6 s was the collector, and the two status
assessments of a pass 2.25 s and 2.94 s (``bench/RESULTS.md``, 2026-12-02). With a young
generation of 50,000 and older ones scanned less often, the same work took 0.26 s, 1.45 s
and 2.12 s, the process's RSS unchanged. Objects in reference cycles live a little longer;
nothing else changes (reference counting frees the rest at once, as before).
"""

from __future__ import annotations

import gc

#: (young generation, younger collections per middle, middle collections per old)
THRESHOLDS = (50_000, 20, 100)


def tune_for_large_heaps() -> None:
    """Freeze what is alive now (imported modules, code: never scanned again) and set
    :data:`THRESHOLDS`. Call once, after imports, before the work begins."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
