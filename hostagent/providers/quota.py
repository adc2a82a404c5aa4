"""Per-binding quotas of the built-in providers: limits read from binding values, rates.

Actors are other people's code, and a provider holds what they give it in the host's
memory or sends it on the lattice's NATS: every built-in provider bounds each binding
(one actor bound to it). A :class:`Quota` is named after the binding value that
overrides it (``MAX_BYTES``, ``PUBLISH_RATE``, ...) and has a default generous for normal
use; :func:`read_quota` takes it from a binding's values. A guest that hits one reads a
:class:`QuotaExceeded` naming the quota, the limit and the number it would have reached.
:class:`TokenBucket` is the rate limiter (pure but for its clock, which tests replace).
Used by :mod:`.keyvalue_memory` and :mod:`.messaging_nats`; the table of quotas is in
docs/actors.md (Quotas).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hostagent.providers.base import ProviderError

Clock = Callable[[], float]


@dataclass(frozen=True)
class Quota:
    """One limit of a provider's binding; ``name`` is the binding value overriding it."""

    name: str
    default: int
    unit: str


class QuotaExceeded(ProviderError):
    """A host call refused because it would take a binding over one of its quotas."""

    def __init__(self, provider: str, quota: Quota, limit: int, would: str) -> None:
        super().__init__(f"{provider} quota {quota.name} exceeded: {would}, over the limit "
                         f"of {limit} {quota.unit} (binding value {quota.name})")
        self.quota = quota.name
        self.limit = limit


def read_quota(values: Mapping[str, str], quota: Quota, *, ceiling: int | None = None) -> int:
    """The limit a binding sets for ``quota`` (its default when the value is absent),
    at most ``ceiling``; ProviderError when the value is not a whole number in range (the
    message never repeats the value: binding values may be secrets). Pure."""
    top = ceiling
    raw = values.get(quota.name, "").strip()
    if not raw:
        return min(quota.default, top) if top is not None else quota.default
    bound = f"from 1 to {top}" if top is not None else "of at least 1"
    try:
        limit = int(raw)
    except ValueError:
        raise ProviderError(f"binding value {quota.name} must be a whole number {bound} "
                            f"({quota.unit})") from None
    if limit < 1 or (top is not None and limit > top):
        raise ProviderError(f"binding value {quota.name} must be a whole number {bound} "
                            f"({quota.unit})")
    return limit


class TokenBucket:
    """``rate`` tokens a second, up to ``burst`` saved; not thread-safe (callers lock)."""

    def __init__(self, rate: float, burst: float, *, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def available(self) -> float:
        """Tokens there are now (refilled for the time since the last look)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return self._tokens

    def take(self, amount: float) -> None:
        """Spend ``amount`` tokens (after :meth:`available` said there are enough)."""
        self._tokens -= amount
