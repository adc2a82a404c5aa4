"""Identity memos: a result kept while its inputs are the very same objects.

Inventories are frozen, and :class:`reconciler.observed.ObservedState` hands out the same
object until a host says something new, so a converged lattice is planned and assessed from
the same objects pass after pass. These memos key on object identity and hold the objects
they key on, so an ``id()`` can never be reused by another object while its entry lives.
Used by :class:`reconciler.matching.Matcher` (one host's index, the whole lattice's merge,
the last analysis: each memo an attribute of the matcher that owns it, never a module
global) and by the agent (the inputs of the last status report). Pure: a hit returns what
the build would.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")


def same_objects(a: Sequence[object], b: Sequence[object]) -> bool:
    """Whether ``a`` and ``b`` hold the very same objects in the same order."""
    return len(a) == len(b) and all(map(operator.is_, a, b))


class PerObject(Generic[K, T]):
    """``build(obj)`` memoised per object, by identity. :meth:`sweep` (every host of the
    lattice at once) keeps exactly the objects of its call, however many; single calls
    drop all entries when ``size`` is reached (the observed lattice replaces its objects
    as hosts change)."""

    def __init__(self, build: Callable[[K], T], *, size: int = 8192) -> None:
        self._build = build
        self._size = size
        self._cache: dict[int, tuple[K, T]] = {}

    def __call__(self, obj: K) -> T:
        got = self._cache.get(id(obj))
        if got is not None and got[0] is obj:
            return got[1]
        value = self._build(obj)
        if len(self._cache) >= self._size:
            self._cache.clear()
        self._cache[id(obj)] = (obj, value)
        return value

    def sweep(self, objs: Sequence[K]) -> list[T]:
        """``[self(o) for o in objs]``, after which only ``objs`` are kept: a lattice
        larger than ``size`` is not indexed again on every pass, and what left it goes."""
        cache = self._cache
        kept: dict[int, tuple[K, T]] = {}
        out: list[T] = []
        for obj in objs:
            got = cache.get(id(obj))
            if got is None or got[0] is not obj:
                got = (obj, self._build(obj))
            kept[id(obj)] = got
            out.append(got[1])
        self._cache = kept
        return out


class LastCall(Generic[K, T]):
    """``build(objs)`` for the last sequence of objects only, reused while the call is
    made with the same objects in the same order."""

    def __init__(self, build: Callable[[Sequence[K]], T]) -> None:
        self._build = build
        self._last: tuple[tuple[K, ...], T] | None = None

    def __call__(self, objs: Sequence[K]) -> T:
        last = self._last
        if last is not None and same_objects(last[0], objs):
            return last[1]
        value = self._build(objs)
        self._last = (tuple(objs), value)
        return value

    @property
    def last(self) -> tuple[tuple[K, ...], T] | None:
        """The last call's objects and value (None before the first)."""
        return self._last

    def remember(self, objs: Sequence[K], value: T) -> None:
        """Keep ``value`` as what ``build(objs)`` gives (a caller that derived it from
        the last value by a patch equal to a build)."""
        self._last = (tuple(objs), value)
