"""Time as an input: the clock type that time-dependent code takes, and a manual one.

Code whose behaviour depends on elapsed time (backoff, heartbeat expiry, crash loops, the
lease, status-push pacing) takes a :data:`Clock` -- a function returning monotonic seconds
-- defaulting to :func:`time.monotonic`. Tests pass a :class:`ManualClock` and move it with
:meth:`ManualClock.advance`, so they see time pass without waiting for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]

monotonic: Clock = time.monotonic


class ManualClock:
    """A clock that moves only when told: ``clock()`` is the current time in seconds."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (never backward); the new time."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds} s)")
        self.now += seconds
        return self.now
