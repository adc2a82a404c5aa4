"""Identity memos (reconciler.memo): a hit only for the very same objects."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.memo import LastCall, PerObject, same_objects


def test_per_object_rebuilds_for_an_equal_but_new_object_and_bounds_itself() -> None:
    built: list[list[int]] = []

    def build(obj: list[int]) -> int:
        built.append(obj)
        return sum(obj)

    memo = PerObject(build, size=2)
    a, b = [1, 2], [1, 2]
    assert (memo(a), memo(a), memo(b)) == (3, 3, 3)
    assert len(built) == 2  # b == a, but it is another object
    memo([5])  # the third entry drops the others
    assert memo(a) == 3 and len(built) == 4


def test_last_call_rebuilds_when_any_object_or_the_order_changes() -> None:
    calls: list[Sequence[object]] = []

    def build(objs: Sequence[object]) -> int:
        calls.append(objs)
        return len(calls)

    memo = LastCall(build)
    x, y = object(), object()
    assert memo([x, y]) == memo([x, y]) == 1
    assert memo([y, x]) == 2 and memo([x]) == 3 and memo([x, object()]) == 4
    assert same_objects((x, y), [x, y]) and not same_objects([x], [x, y])


def test_a_sweep_keeps_every_object_of_a_lattice_larger_than_size_and_drops_the_rest(
) -> None:
    """A lattice of more hosts than ``size``: a second pass over the same hosts builds
    nothing again (single calls would have cleared the memo on every pass), and a host
    that left is forgotten."""
    built: list[list[int]] = []

    def build(obj: list[int]) -> int:
        built.append(obj)
        return sum(obj)

    memo = PerObject(build, size=4)
    hosts = [[i] for i in range(10)]
    assert memo.sweep(hosts) == list(range(10)) and len(built) == 10
    assert memo.sweep(hosts) == list(range(10)) and len(built) == 10
    gone, *rest = hosts
    assert memo.sweep(rest) == list(range(1, 10)) and len(built) == 10
    assert memo(gone) == 0 and len(built) == 11  # forgotten: built again
