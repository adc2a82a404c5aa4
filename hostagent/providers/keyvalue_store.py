"""One actor's key-value store: values, lists and sets under quotas, keys that expire.

What the operations of waSCC's ``wascc:keyvalue`` contract (:mod:`hostagent.wascc_codec.
keyvalue`) do, as waSCC's providers (in memory, Redis) did, in Redis's words where the
two agree:

* a key holds a value (a string), a list or a set of strings; ``Set`` replaces whatever
  the key held (and its expiry: ``expires`` > 0 seconds, 0 never, < 0 refused); ``Add``
  adds to a value holding a decimal integer (a missing key counts as 0), keeps its
  expiry, and refuses a result outside i32; ``Get`` of a missing key is ``exists:
  false``;
* ``Push`` appends to a list; ``ListItemDelete`` removes every occurrence of an item;
  both answer the list's new length. ``Range`` is Redis's ``LRANGE``: ``stop``
  inclusive, negative indices from the end, out of range clipped, a missing key empty;
* ``SetAdd`` and ``SetRemove`` answer the set's new size; ``SetUnion`` and
  ``SetIntersection`` take missing keys as empty sets, ``SetQuery`` lists a set's
  members; sets are answered sorted, so that answers repeat;
* ``Del`` and ``Clear`` delete the key, whatever it holds; a list or set left empty is
  deleted too. An operation on a key of another kind is refused (:class:`WrongKind`),
  the store unchanged.

Quotas (:mod:`.quota`, binding values): ``MAX_KEYS``, ``MAX_VALUE_BYTES`` (one value,
list item or set member, in UTF-8) and ``MAX_BYTES``, all the keys and values of the
store in UTF-8, each list item and set member counting :data:`ITEM_OVERHEAD` bytes more
(what Python needs to keep one apart; without it a flood of one-byte items would cost the
host ~60 times what it counts). A call that would go over one is refused whole
(:class:`~.quota.QuotaExceeded`), the store unchanged; shrinking is always allowed.
Expired keys are dropped when touched, and all of them before a quota refuses a call.

Not thread-safe: :class:`~.keyvalue_memory.MemoryKeyValue` locks around every call. Pure
but for its clock, which tests replace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hostagent.providers.base import ProviderError
from hostagent.providers.quota import Quota, QuotaExceeded, read_quota

MAX_BYTES = Quota("MAX_BYTES", 16 * 1024 * 1024, "bytes")
MAX_KEYS = Quota("MAX_KEYS", 10_000, "keys")
MAX_VALUE_BYTES = Quota("MAX_VALUE_BYTES", 1024 * 1024, "bytes")
QUOTAS = (MAX_BYTES, MAX_KEYS, MAX_VALUE_BYTES)
#: what one list item or set member counts on top of its UTF-8 bytes
ITEM_OVERHEAD = 64
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
_WHO = "keyvalue"

Item = str | list[str] | set[str]
Clock = Callable[[], float]


class WrongKind(ProviderError):
    """An operation on a key that holds another kind of item (a value, list or set)."""

    def __init__(self, key: str, has: Item, wants: str) -> None:
        super().__init__(f"key {key[:80]!r} holds a {kind_of(has)}, not a {wants}")


def kind_of(item: Item) -> str:
    """``value``, ``list`` or ``set``. Pure."""
    return "value" if isinstance(item, str) else "list" if isinstance(item, list) else "set"


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def cost(key: str, item: Item) -> int:
    """The bytes a key and its item count against ``MAX_BYTES``. Pure."""
    if isinstance(item, str):
        return _size(key) + _size(item)
    return _size(key) + sum(_size(i) + ITEM_OVERHEAD for i in item)


@dataclass(frozen=True)
class Limits:
    """The quotas of one binding."""

    max_bytes: int = MAX_BYTES.default
    max_keys: int = MAX_KEYS.default
    max_value_bytes: int = MAX_VALUE_BYTES.default

    @classmethod
    def of(cls, values: Mapping[str, str]) -> Limits:
        """From a binding's values (ProviderError on a bad one). Pure."""
        return cls(*(read_quota(values, q) for q in QUOTAS))


@dataclass
class Store:
    """One actor's keys, what they hold and the bytes they count."""

    limits: Limits = field(default_factory=Limits)
    clock: Clock = time.monotonic
    items: dict[str, Item] = field(default_factory=dict)
    expiry: dict[str, float] = field(default_factory=dict)  # key -> clock() deadline
    sizes: dict[str, int] = field(default_factory=dict)  # key -> cost(key, item)
    used: int = 0

    # -- bookkeeping ---------------------------------------------------------------------

    def _live(self, key: str) -> Item | None:
        """What ``key`` holds, dropping it first if it expired."""
        deadline = self.expiry.get(key)
        if deadline is not None and deadline <= self.clock():
            self._drop(key)
        return self.items.get(key)

    def _drop(self, key: str) -> None:
        if key in self.items:
            del self.items[key]
            self.used -= self.sizes.pop(key)
        self.expiry.pop(key, None)

    def purge_expired(self) -> int:
        """Drop every expired key; how many."""
        now = self.clock()
        gone = [k for k, deadline in self.expiry.items() if deadline <= now]
        for key in gone:
            self._drop(key)
        return len(gone)

    def _check_value(self, text: str) -> None:
        if _size(text) > self.limits.max_value_bytes:
            raise QuotaExceeded(_WHO, MAX_VALUE_BYTES, self.limits.max_value_bytes,
                                f"a value of {_size(text)} bytes")

    def _admit(self, key: str, new_cost: int) -> None:
        """Raise QuotaExceeded if ``key`` costing ``new_cost`` takes the store over a
        quota (expired keys are dropped first, then it is asked again)."""
        for attempt in range(2):
            old = self.sizes.get(key)
            keys = len(self.items) + (old is None)
            after = self.used + new_cost - (old or 0)
            over_keys = old is None and keys > self.limits.max_keys
            over_bytes = after > self.limits.max_bytes and after > self.used
            if not (over_keys or over_bytes):
                return
            if attempt == 0 and self.purge_expired():
                continue
            if over_keys:
                raise QuotaExceeded(_WHO, MAX_KEYS, self.limits.max_keys,
                                    f"the store would hold {keys} keys")
            raise QuotaExceeded(_WHO, MAX_BYTES, self.limits.max_bytes,
                                f"the store would hold {after} bytes")

    def _put(self, key: str, item: Item, new_cost: int) -> None:
        """Store ``item`` (admitted) under ``key``."""
        self.used += new_cost - self.sizes.get(key, 0)
        self.items[key] = item
        self.sizes[key] = new_cost

    def _container(self, key: str, kind: type[list[str]] | type[set[str]]) -> Item | None:
        item = self._live(key)
        if item is not None and not isinstance(item, kind):
            raise WrongKind(key, item, kind.__name__)
        return item

    # -- values --------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """The value of ``key``, None when absent."""
        item = self._live(key)
        if item is not None and not isinstance(item, str):
            raise WrongKind(key, item, "value")
        return item

    def set_value(self, key: str, value: str, expires_s: int = 0) -> None:
        """``key`` := ``value``, expiring after ``expires_s`` seconds (0: never)."""
        if expires_s < 0:
            raise ProviderError(f"expires must be 0 (never) or a number of seconds, "
                                f"not {expires_s}")
        self._check_value(value)
        self._live(key)
        new_cost = cost(key, value)
        self._admit(key, new_cost)
        self._put(key, value, new_cost)
        if expires_s:
            self.expiry[key] = self.clock() + expires_s
        else:
            self.expiry.pop(key, None)

    def add(self, key: str, delta: int) -> int:
        """Add ``delta`` to the integer value of ``key`` (0 when absent); the result."""
        current = self.get(key)
        try:
            base = int(current) if current is not None else 0
        except ValueError:
            raise ProviderError(f"the value of {key[:80]!r} is not an integer") from None
        total = base + delta
        if not I32_MIN <= total <= I32_MAX:
            raise ProviderError(f"adding {delta} to {key[:80]!r} overflows i32")
        text = str(total)
        new_cost = cost(key, text)
        self._admit(key, new_cost)
        self._put(key, text, new_cost)  # keeps the key's expiry, as Redis's INCRBY
        return total

    def delete(self, key: str) -> None:
        """Forget ``key``, whatever it holds."""
        self._drop(key)

    def exists(self, key: str) -> bool:
        return self._live(key) is not None

    # -- lists ---------------------------------------------------------------------------

    def push(self, key: str, value: str) -> int:
        """Append ``value`` to the list at ``key``; its new length."""
        self._check_value(value)
        items = self._container(key, list)
        new_cost = self.sizes.get(key, _size(key)) + _size(value) + ITEM_OVERHEAD
        self._admit(key, new_cost)
        lst = items if isinstance(items, list) else []
        lst.append(value)
        self._put(key, lst, new_cost)
        return len(lst)

    def list_delete(self, key: str, value: str) -> int:
        """Remove every ``value`` from the list at ``key``; its new length."""
        items = self._container(key, list)
        if not isinstance(items, list):
            return 0
        kept = [i for i in items if i != value]
        if not kept:
            self._drop(key)
            return 0
        self._put(key, kept, cost(key, kept))
        return len(kept)

    def range(self, key: str, start: int, stop: int) -> list[str]:
        """Redis's ``LRANGE key start stop``: ``stop`` inclusive, negatives from the end."""
        items = self._container(key, list)
        if not isinstance(items, list):
            return []
        n = len(items)
        first = max(start + n if start < 0 else start, 0)
        last = min(stop + n if stop < 0 else stop, n - 1)
        return items[first:last + 1] if first <= last else []

    # -- sets ----------------------------------------------------------------------------

    def set_add(self, key: str, value: str) -> int:
        """Add ``value`` to the set at ``key``; its new size."""
        self._check_value(value)
        members = self._container(key, set)
        if isinstance(members, set) and value in members:
            return len(members)
        new_cost = self.sizes.get(key, _size(key)) + _size(value) + ITEM_OVERHEAD
        self._admit(key, new_cost)
        group = members if isinstance(members, set) else set()
        group.add(value)
        self._put(key, group, new_cost)
        return len(group)

    def set_remove(self, key: str, value: str) -> int:
        """Remove ``value`` from the set at ``key``; its new size."""
        members = self._container(key, set)
        if not isinstance(members, set):
            return 0
        if value in members:
            members.discard(value)
            if not members:
                self._drop(key)
                return 0
            self._put(key, members, self.sizes[key] - _size(value) - ITEM_OVERHEAD)
        return len(members)

    def _sets(self, keys: list[str]) -> list[set[str]]:
        found = [self._container(k, set) for k in keys]
        return [m if isinstance(m, set) else set() for m in found]

    def set_members(self, key: str) -> list[str]:
        return sorted(self._sets([key])[0])

    def set_union(self, keys: list[str]) -> list[str]:
        return sorted(set().union(*self._sets(keys)))

    def set_intersection(self, keys: list[str]) -> list[str]:
        sets = self._sets(keys)
        return sorted(set.intersection(*sets)) if sets else []
