"""The executor's memory of what failed, and when each failed action may run again.

The error's type decides (:mod:`reconciler.errors`, :mod:`lattice.errors`):

* transient (a host did not answer, an unexpected exception): retried after the delay the
  error carries, else after the :class:`~lattice.backoff.Backoff` policy's delay for the
  attempt, jittered;
* permanent (a host refused the command): *refused*, not retried until its inputs change:
  the planned action (its content, without the planner's ``reason``), any host joining or
  changing (:meth:`Retries.hosts_changed`), or the refusing host itself (its labels, its
  start time, the providers it runs), including its leaving; and at the agent's periodic
  resync (:meth:`Retries.release_refused`), since some inputs of a refusal live where the
  agent does not watch (the lattice's trust policy, the module registry);
* unplaceable (no host bid): retried when a host joins or changes, and after the backoff.

What failed is kept for status: ``unplaced`` (key -> the hosts' decline reasons) and
``failures`` (key -> :class:`~reconciler.errors.Failure`, the message and its condition
reason). Time comes from an injected clock (:mod:`lattice.clock`); no I/O here.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from lattice.backoff import Backoff
from lattice.clock import Clock
from lattice.errors import PermanentError
from reconciler import actions as A
from reconciler.errors import REFUSED, CommandRefused, Failure
from reconciler.observed import ObservedState

log = logging.getLogger(__name__)


@dataclass
class _Backoff:
    attempts: int
    retry_at: float


@dataclass(frozen=True)
class _Refusal:
    """A permanent failure: the action as refused, and the refusing host as it was."""

    action: A.Action
    host_id: str | None
    host: Hashable


class Retries:
    """Per action key: its backoff or refusal, and its last failure message."""

    def __init__(self, observed: ObservedState, *, backoff: Backoff, clock: Clock,
                 rng: random.Random | None = None) -> None:
        self.observed = observed
        self.backoff = backoff
        self._clock = clock
        self._rng = rng or random.Random()
        self._backoff: dict[str, _Backoff] = {}
        self._refused: dict[str, _Refusal] = {}
        self.unplaced: dict[str, str] = {}
        #: action key -> its last failure (the message, and the reason status shows)
        self.failures: dict[str, Failure] = {}

    def waits(self, act: A.Action, now: float) -> bool:
        """Whether ``act`` must not run at ``now``: backing off, or refused with the same
        inputs (a refusal whose inputs changed is released here)."""
        b = self._backoff.get(act.key)
        if b is not None and b.retry_at > now:
            return True
        refusal = self._refused.get(act.key)
        if refusal is None:
            return False
        if (_content(refusal.action) == _content(act) and (
                refusal.host_id is None
                or _host_version(self.observed, refusal.host_id) == refusal.host)):
            return True
        log.info("%s: its inputs changed since it was refused; trying again", act.key)
        del self._refused[act.key]
        return False

    def refused(self, key: str) -> bool:
        """Whether the action ``key`` waits for its inputs to change after a refusal."""
        return key in self._refused

    def retry_times(self) -> list[float]:
        """When each backoff ends (refusals wait for a change, not for a time)."""
        return [b.retry_at for b in self._backoff.values()]

    def hold(self, key: str, delay: float) -> None:
        """Do not run ``key`` for ``delay`` seconds (0 or less: no change)."""
        if delay <= 0:
            return
        b = self._backoff.get(key)
        self._backoff[key] = _Backoff((b.attempts if b else 0) + 1, self._clock() + delay)

    def hosts_changed(self) -> None:
        """A host joined or changed: unplaced and refused actions may run at once."""
        for key in self.unplaced:
            self._backoff.pop(key, None)
        self.release_refused()

    def release_refused(self) -> int:
        """Let every refused action run again (its inputs may have changed unseen); how
        many there were."""
        n = len(self._refused)
        self._refused.clear()
        return n

    def forget(self, keep: Iterable[str]) -> None:
        """Drop everything about actions not in ``keep``."""
        keep_set = set(keep)
        for d in (self.unplaced, self.failures, self._backoff, self._refused):
            for key in [k for k in d if k not in keep_set]:
                del d[key]

    def retry_later(self, act: A.Action, message: str, *, unplaced: bool = False,
                    delay: float | None = None) -> float:
        """Back ``act`` off: ``delay`` (jittered) when the error carried one, else the
        policy's delay for this attempt. The wait, in seconds."""
        b = self._backoff.get(act.key)
        attempts = b.attempts + 1 if b else 1
        if delay is None:
            wait = self.backoff.delay(attempts - 1, self._rng)
        else:
            wait = self.backoff.jittered(delay, self._rng)
        self._backoff[act.key] = _Backoff(attempts, self._clock() + wait)
        self._refused.pop(act.key, None)
        if unplaced:
            self.unplaced[act.key] = message
            self.failures.pop(act.key, None)
        else:
            self.failures[act.key] = Failure(message)
            self.unplaced.pop(act.key, None)
        log.warning("%s failed (attempt %d, retry in %.2fs): %s", act.key, attempts, wait,
                    message)
        return wait

    def refuse(self, act: A.Action, exc: PermanentError) -> None:
        """Do not retry ``act`` until its inputs change (see :meth:`waits`)."""
        host_id = exc.host_id if isinstance(exc, CommandRefused) else None
        self._refused[act.key] = _Refusal(act, host_id, _host_version(self.observed, host_id))
        self._backoff.pop(act.key, None)
        self.failures[act.key] = Failure(exc.message, REFUSED)
        self.unplaced.pop(act.key, None)
        log.warning("%s refused: %s; not retried until it, or a host, changes", act.key,
                    exc.message)

    def succeeded(self, key: str) -> None:
        for d in (self._backoff, self._refused, self.unplaced, self.failures):
            d.pop(key, None)


def _content(act: A.Action) -> A.Action:
    """What the action asks for, without the planner's ``reason`` for asking."""
    return dataclasses.replace(act, reason="")


def _host_version(o: ObservedState, host_id: str | None) -> Hashable:
    """What of a host can change its answer: its labels, its start time (a restart) and
    the providers it runs; None when it is gone."""
    inv = o.get(host_id) if host_id is not None else None
    if inv is None:
        return None
    return (tuple(sorted(inv.labels.items())), inv.started_at, tuple(sorted(
        (p.capability_id, p.binding_name, p.vendor_id) for p in inv.providers)))
