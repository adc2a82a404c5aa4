"""Planner benchmark (issue 7, item 4): ``plan()`` on 10,000 desired actor replicas
against 1,000 hosts, from an empty lattice (everything to start) and converged (nothing
to do). Targets on the 2-core reference machine: full plan <= 50 ms, converged <= 10 ms.
Converged is measured three times with one kept :class:`~reconciler.matching.Matcher`, as
the agent keeps one: with the same objects pass after pass (a resync of a quiet lattice,
where the analysis is reused), and with one host's record new each run (a heartbeat that
says something new: the whole matching runs again over the other hosts' kept indexes);
and with a fresh matcher each run (a caller that keeps none, e.g. ``latticectl diff``).
Issue 16 adds a host joining the converged lattice (a new host with nothing running, a
different one each run, after a pass over the converged lattice): the kept matcher patches
its last analysis instead of matching everything again; target <= 1 ms; and a host
leaving and a host changing its labels (each after a pass over the converged lattice): the
kept matcher re-matches only what that host touched. Issue 16's targets: from empty
<= 30 ms, converged <= 0.3 ms, a host joining <= 1 ms.
Times are CPU time of this process by default (``--clock wall`` for wall time): the
reference machine is shared and loaded.

    python bench/bench_planner.py [--replicas 10000] [--hosts 1000] [--repeat 9] [--no-record]
                                  [--results FILE] [--clock cpu|wall]

The scenario: one deployment per 10 replicas (two actors of five replicas each, affinity
rules cycling over none / zone=a / zone!=b / leds=12), one shared provider per deployment
(10 capabilities under 3 rule sets), one binding set per two deployments with two bindings.
The converged lattice is built by applying plans with the simulator of the planner's tests
(tests/planner_strategies.py, so the test extra must be installed) until nothing is left.
Prints the timings and appends a dated section (machine, command, verdicts) to
bench/RESULTS.md, like the other scripts in bench/.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.benchlib import (  # noqa: E402
    RESULTS,
    command_line,
    heading,
    machine,
    record,
    verdict,
)
from lattice.ids import encode_module_key  # noqa: E402
from lattice.manifests import ActorSpec, BindingSpec, DesiredState, ProviderSpec  # noqa: E402
from lattice.protocol import HostInventory  # noqa: E402
from reconciler.matching import Matcher  # noqa: E402
from reconciler.planner import plan  # noqa: E402
from tests.planner_strategies import (  # noqa: E402
    apply_plan,
    bindingset,
    deployment,
    host,
    lattice,
    state,
)

TARGET_FULL_MS, TARGET_CONVERGED_MS, TARGET_JOIN_MS = 30.0, 0.3, 1.0
ACTOR_RULES: tuple[list[str], ...] = ([], ["zone=a"], ["zone!=b"], ["leds=12"])
PROVIDER_RULES: tuple[list[str], ...] = ([], ["leds=12"], ["zone=c"])


def scenario(replicas: int, hosts: int) -> tuple[DesiredState, dict[str, HostInventory]]:
    """The desired state and an empty lattice of ``hosts`` hosts (see module doc)."""
    ndep = max(1, replicas // 10)
    pool = [encode_module_key(i.to_bytes(32, "big")) for i in range(1, 2 * ndep + 1)]
    deps, sets = [], []
    for k in range(ndep):
        a1, a2 = pool[(2 * k) % len(pool)], pool[(2 * k + 1) % len(pool)]
        cap = f"bench:cap{k % 10}"
        deps.append(deployment(
            f"app-{k:05d}",
            [ActorSpec(id=a, replicas=5, affinity_rules=ACTOR_RULES[k % 4]) for a in (a1, a2)],
            [ProviderSpec(id=cap, vendor_id="v", affinity_rules=PROVIDER_RULES[k % 3])]))
        if k % 2 == 0:
            sets.append(bindingset(f"bind-{k:05d}", [
                BindingSpec(capability_id=cap, actor=a, values={"K": f"{k}"})
                for a in (a1, a2)]))
    observed = lattice(*(host(
        f"H{i:05d}",
        {"zone": "abcd"[i % 4], **({"leds": "12"} if i % 10 == 0 else {})})
        for i in range(hosts)))
    return state(*deps, *sets, revision="bench"), observed


def converge(desired: DesiredState, observed: dict[str, HostInventory]
             ) -> dict[str, HostInventory]:
    """Apply plans with the simulator until the planner has nothing left to do."""
    for _ in range(5):
        actions = plan(desired, observed)
        if not actions:
            return observed
        observed = apply_plan(actions, observed).observed
    raise RuntimeError(f"did not converge: {len(plan(desired, observed))} actions remain")


CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}


def timed(fn: Callable[[], object], repeat: int, clock: Callable[[], float] = time.process_time,
          before: Callable[[], object] | None = None) -> tuple[float, float]:
    """(min, median) time of ``fn`` in ms on ``clock`` over ``repeat`` runs, after one
    warm-up; ``before`` runs ahead of each run, untimed."""
    if before is not None:
        before()
    fn()
    runs = []
    for _ in range(repeat):
        if before is not None:
            before()
        t = clock()
        fn()
        runs.append((clock() - t) * 1000)
    return min(runs), statistics.median(runs)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=10_000)
    ap.add_argument("--hosts", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--results", type=Path, default=RESULTS, help="append here instead")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                    help="CPU time of this process (default) or wall time")
    args = ap.parse_args(argv)
    clock = CLOCKS[args.clock]

    desired, empty = scenario(args.replicas, args.hosts)
    full_plan = plan(desired, empty)
    converged = converge(desired, empty)
    entities = sum(len(h.actors) + len(h.providers) + len(h.bindings) for h in converged.values())
    gc.collect()
    # new host records each run (and a fresh matcher), so nothing of an earlier run serves
    empties = iter([{k: h.model_copy() for k, h in empty.items()}
                    for _ in range(args.repeat + 1)])
    full = timed(lambda: plan(desired, next(empties)), args.repeat, clock)
    kept = Matcher()  # as the agent keeps one for its life
    idle = timed(lambda: plan(desired, converged, matcher=kept), args.repeat, clock)
    # a heartbeat with news: one host's record is a new object (a different host each run),
    # so the whole matching runs again over 999 indexed hosts and one new one
    ids = sorted(converged)
    news = iter([{**converged, ids[k % len(ids)]: converged[ids[k % len(ids)]].model_copy()}
                 for k in range(args.repeat + 1)])
    one_new = timed(lambda: plan(desired, next(news), matcher=kept), args.repeat, clock)
    # a host joins (nothing running on it yet; a different one each run), the pass before
    # having planned the converged lattice
    joins = iter([{**converged, f"J{k:05d}": host(f"J{k:05d}", {"zone": "a", "leds": "12"})}
                  for k in range(args.repeat + 1)])
    joined = timed(lambda: plan(desired, next(joins), matcher=kept), args.repeat, clock,
                   before=lambda: plan(desired, converged, matcher=kept))
    # a host leaves, and a host changes its labels (a different one each run, one that
    # runs replicas, providers and bindings), the pass before having planned the
    # converged lattice
    leaves = iter([{h: inv for h, inv in converged.items() if h != ids[(7 * k) % len(ids)]}
                   for k in range(args.repeat + 1)])
    left = timed(lambda: plan(desired, next(leaves), matcher=kept), args.repeat, clock,
                 before=lambda: plan(desired, converged, matcher=kept))
    relabels = iter([{**converged, ids[(7 * k + 3) % len(ids)]: converged[
        ids[(7 * k + 3) % len(ids)]].model_copy(update={"labels": {"zone": "b"}})}
        for k in range(args.repeat + 1)])
    relabelled = timed(lambda: plan(desired, next(relabels), matcher=kept), args.repeat,
                       clock, before=lambda: plan(desired, converged, matcher=kept))
    fresh = timed(lambda: plan(desired, converged), args.repeat, clock)
    result = {"full_ms": full[1], "full_min_ms": full[0],
              "converged_ms": idle[1], "converged_min_ms": idle[0],
              "one_new_ms": one_new[1], "one_new_min_ms": one_new[0],
              "join_ms": joined[1], "join_min_ms": joined[0],
              "leave_ms": left[1], "leave_min_ms": left[0],
              "relabel_ms": relabelled[1], "relabel_min_ms": relabelled[0],
              "fresh_ms": fresh[1], "fresh_min_ms": fresh[0]}
    ndep, nbind = len(desired.deployments), sum(
        len(b.spec.bindings) for b in desired.bindingsets.values())
    print(f"scenario: {args.replicas} actor replicas in {ndep} deployments, {nbind} bindings, "
          f"{args.hosts} hosts; {len(full_plan)} actions from empty; "
          f"{entities} running entities when converged")
    print(f"full plan:      median {full[1]:7.2f} ms   min {full[0]:7.2f} ms   "
          f"({verdict(full[1], TARGET_FULL_MS)})")
    print(f"converged plan: median {idle[1]:7.2f} ms   min {idle[0]:7.2f} ms   "
          f"({verdict(idle[1], TARGET_CONVERGED_MS)})")
    print(f"  one host new: median {one_new[1]:7.2f} ms   min {one_new[0]:7.2f} ms   "
          "(no target: re-matches what that host touched)")
    print(f"  a host joins: median {joined[1]:7.2f} ms   min {joined[0]:7.2f} ms   "
          f"({verdict(joined[1], TARGET_JOIN_MS)})")
    print(f"  a host leaves: median {left[1]:6.2f} ms   min {left[0]:7.2f} ms")
    print(f"  a host relabelled: median {relabelled[1]:5.2f} ms   min {relabelled[0]:6.2f} ms")
    print(f" fresh matcher: median {fresh[1]:7.2f} ms   min {fresh[0]:7.2f} ms   (none kept)")
    if not args.no_record:
        record([
            heading(f"planner, {args.replicas} replicas / {args.hosts} hosts"),
            f"- machine: {machine()}",
            f"- command: `{command_line('bench_planner.py', argv)}` ({args.clock} time)",
            f"- scenario: {ndep} deployments, {nbind} bindings; {len(full_plan)} actions from "
            f"empty; {entities} running entities when converged",
            f"- full plan (from empty): median {full[1]:.1f} ms, min {full[0]:.1f} ms "
            f"over {args.repeat} runs; {verdict(full[1], TARGET_FULL_MS)}",
            f"- converged plan: median {idle[1]:.2f} ms, min {idle[0]:.2f} ms over "
            f"{args.repeat} runs, a kept Matcher; {verdict(idle[1], TARGET_CONVERGED_MS)}",
            f"- converged, one host's record new each run (nothing to do, a kept "
            f"Matcher): median {one_new[1]:.1f} ms, min {one_new[0]:.1f} ms "
            f"over {args.repeat} runs (a kept Matcher re-matches what that host touched)",
            f"- converged, a host joins (nothing running on it; a kept Matcher patches its "
            f"last analysis): median {joined[1]:.2f} ms, min {joined[0]:.2f} ms over "
            f"{args.repeat} runs; {verdict(joined[1], TARGET_JOIN_MS)}",
            f"- converged, a host leaves (one running replicas, providers, bindings; a kept "
            f"Matcher re-matches what it touched): median {left[1]:.2f} ms, min "
            f"{left[0]:.2f} ms over {args.repeat} runs",
            f"- converged, a host's labels change (zone=b; a kept Matcher): median "
            f"{relabelled[1]:.2f} ms, min {relabelled[0]:.2f} ms over {args.repeat} runs",
            f"- converged, a fresh Matcher each run (a caller that keeps none): median "
            f"{fresh[1]:.1f} ms, min {fresh[0]:.1f} ms over {args.repeat} runs",
        ], args.results)
    return result


if __name__ == "__main__":
    main()
