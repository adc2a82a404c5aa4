"""Crash loops: actor instances that keep crashing, counted per replica.

A host stops an instance that trapped or overran its CPU deadline and says so in an
``actor_stopped`` event whose reason starts with ``crashed:``. The agent starts the replica
again (it is missing), which for a broken module means a loop. :class:`CrashTracker`
counts crashes per replica (by the start key of :mod:`reconciler.actions`) in a sliding
window, so the executor can back the restarts off exponentially, as Kubernetes'
CrashLoopBackOff does, and the assessment can say ``Degraded``/``CrashLoopBackOff`` with
the last reason. Pure apart from the clock, which is injected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lattice.backoff import Backoff
from lattice.clock import Clock, monotonic
from lattice.protocol import ANN_KIND, ANN_NAME, ANN_REPLICA, ActorEvent, is_managed
from reconciler.actions import start_actor_key

CRASH_PREFIX = "crashed:"
#: Crashes older than this are forgotten.
WINDOW_S = 600.0
#: From this many crashes in the window a replica is in a crash loop.
LOOP_AT = 2
#: Restarts of a looping replica wait 1 s, 2 s, 4 s ... up to 60 s (no jitter: one agent
#: restarts it, nothing races).
BACKOFF = Backoff(base=1.0, max=60.0)


@dataclass
class Crashes:
    """The recent crashes of one replica: when, and the last reason."""

    times: list[float] = field(default_factory=list)
    reason: str = ""


class CrashTracker:
    """Crash counts per replica start key, in a sliding window."""

    def __init__(self, clock: Clock = monotonic) -> None:
        self._clock = clock
        self._by_key: dict[str, Crashes] = {}

    def record(self, event: ActorEvent) -> str | None:
        """Count ``event`` if it is the crash of a replica the agent owns; its key."""
        ann = event.annotations
        if not event.reason.startswith(CRASH_PREFIX) or not is_managed(ann):
            return None
        replica = ann.get(ANN_REPLICA, "")  # "0", a spread share's "east-0", a daemon's host
        if ann.get(ANN_KIND) != "Deployment" or not replica:
            return None
        key = start_actor_key(ann.get(ANN_NAME, ""), event.actor_id, replica)
        entry = self._by_key.setdefault(key, Crashes())
        entry.times.append(self._clock())
        entry.reason = event.reason
        self._prune(entry)
        return key

    def _prune(self, entry: Crashes) -> None:
        cutoff = self._clock() - WINDOW_S
        entry.times = [t for t in entry.times if t >= cutoff]

    def count(self, key: str) -> int:
        entry = self._by_key.get(key)
        if entry is None:
            return 0
        self._prune(entry)
        if not entry.times:
            del self._by_key[key]
            return 0
        return len(entry.times)

    def backoff(self, key: str) -> float:
        """Seconds to wait before starting ``key`` again (0: not looping)."""
        n = self.count(key)
        if n < LOOP_AT:
            return 0.0
        return BACKOFF.delay(n - LOOP_AT)

    def loops(self) -> dict[str, tuple[int, str]]:
        """Replicas in a crash loop: key -> (crashes in the window, last reason)."""
        out: dict[str, tuple[int, str]] = {}
        for key in list(self._by_key):
            n = self.count(key)
            if n >= LOOP_AT:
                out[key] = (n, self._by_key[key].reason)
        return out
