"""The one backoff formula of vinculum: how long to wait before the next attempt.

Every retrying site -- the executor's failed commands, crash-loop restarts, the status
writer's pushes and its compare-and-swap races, ``latticectl apply``'s push races -- asks a
:class:`Backoff` policy for its next delay, so the numbers live in one place per site and
the formula in one place for all of them.

The policy computes a delay; it does not run or sleep anything. The callers are
scheduler-style loops that keep an attempt count per key and a ``retry_at`` time on an
injected clock (:mod:`lattice.clock`), which retry libraries (tenacity, backoff) that wrap
and re-call a function do not model. Pure, apart from the random source, which is passed in.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Exponential backoff, capped, with downward jitter.

    Attempt ``n`` (0 for the first retry) waits ``min(max, base * factor ** n)``, then
    jitter takes a random share of up to ``jitter`` off it, so the delay lies in
    ``[d * (1 - jitter), d]``: never above ``max``, and racing retriers spread out.
    """

    base: float
    factor: float = 2.0
    max: float = 30.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.max < 0 or not 0 <= self.jitter <= 1:
            raise ValueError(f"not a backoff policy: {self}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based), jittered by ``rng``
        (default: the module's shared generator)."""
        exponent = max(0, attempt)
        # factor ** exponent overflows a float long before an attempt count does
        raw = self.max if exponent > 1000 else min(self.max, self.base * self.factor ** exponent)
        return self.jittered(raw, rng)

    def jittered(self, seconds: float, rng: random.Random | None = None) -> float:
        """``seconds`` with this policy's jitter (for a delay an error carries itself)."""
        if not self.jitter:
            return seconds
        r = (rng or _shared).random()
        return seconds * (1.0 - self.jitter * r)

    def sleep(self, attempt: int) -> None:
        """Block for :meth:`delay` (``attempt``): for the synchronous retry loops of the git
        side, which run on worker threads."""
        time.sleep(self.delay(attempt))


_shared = random.Random()
