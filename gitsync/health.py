"""The git source's health: how its fetches of the remote are going.

:class:`SourceHealth` is a small immutable record that :class:`gitsync.source.GitSource`
replaces after every fetch (:meth:`SourceHealth.failed`, :meth:`SourceHealth.succeeded`):
the last fetch error (git's message, credentials in URLs redacted by :func:`redact`), the
time of the last good fetch, and the first failure of the current streak. A failing fetch
changes nothing else: the mirror keeps the last fetched head, so the last good desired
state stays in force. :meth:`SourceHealth.condition` turns the record into the status's
``SourceReady`` condition (Flux's GitRepository ``Ready``/``FetchFailed``), whose content
moves only when the source's state does: not with each failed attempt, so a failure streak
makes one status commit. :mod:`gitsync.watch` reports changes of health to its consumer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from lattice.status import Condition, canonical_time, time_text

#: ``scheme://user:password@host`` or ``scheme://token@host``: the userinfo is hidden.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
#: curl's timing in git's message ("after 2001 ms") differs per attempt; it is not news.
_TIMING = re.compile(r"\bafter \d+ ms\b")


def redact(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``, and
    per-attempt timings dropped, so it can go into status and logs. Pure."""
    return _TIMING.sub("after some ms", _USERINFO.sub(r"\g<scheme>***@", text))


def utcnow() -> datetime:
    return canonical_time(datetime.now(UTC))


@dataclass(frozen=True)
class SourceHealth:
    """How the source's fetches are going. A local repository is never fetched: it stays
    healthy, with no ``last_good``."""

    #: where the source is (redacted), for messages
    location: str = ""
    #: the redacted error of the last failed fetch of the current streak; "" when healthy
    error: str = ""
    #: when a fetch last succeeded (None: never, since the agent started)
    last_good: datetime | None = None
    #: the first failure of the current streak (None when healthy)
    failing_since: datetime | None = None
    #: failed fetches in the current streak
    failures: int = 0
    #: the first good fetch after the last failure (or the first at all)
    ok_since: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.failures == 0

    def failed(self, error: str, now: datetime) -> SourceHealth:
        """The health after a failed fetch at ``now``. Pure."""
        return replace(self, error=redact(error), failures=self.failures + 1,
                       failing_since=self.failing_since or canonical_time(now))

    def succeeded(self, now: datetime) -> SourceHealth:
        """The health after a good fetch at ``now``. Pure."""
        now = canonical_time(now)
        return SourceHealth(location=self.location, last_good=now,
                            ok_since=self.ok_since if self.ok and self.ok_since else now)

    def condition(self) -> Condition:
        """The ``SourceReady`` condition for status: False with the git error and the time
        of the last good fetch, True otherwise. Neither message holds a time that moves
        while the state does not. Pure."""
        where = f" of {self.location}" if self.location else ""
        if self.ok:
            message = (f"fetches{where} succeed" if self.last_good is not None
                       else f"the source{where} is read in place")
            return Condition.source_ready(message, since=self.ok_since)
        good = (f"last good fetch at {time_text(self.last_good)}" if self.last_good
                else "no good fetch since the agent started")
        return Condition.fetch_failed(f"{self.error}; {good}", since=self.failing_since)

    def same_state(self, other: SourceHealth) -> bool:
        """True when ``other`` shows the same condition (only counters or the time of the
        last good fetch of a healthy source moved)."""
        return self.condition() == other.condition()

    def describe_recovery(self, now: datetime) -> str:
        """The log line when a fetch succeeds after this (failing) health. Pure."""
        down = (canonical_time(now) - self.failing_since).total_seconds() \
            if self.failing_since else 0.0
        return f"source recovered after {self.failures} failures (down {down:.1f} s)"
