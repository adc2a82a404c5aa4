"""Who is out there: the agent's ping of the lattice, gathered until the answers stop.

A ping is one request on ``lattice.<id>.ping`` that every host answers with its inventory.
How long to listen is the question: a fixed window misses hosts when 10,000 of them answer
on a busy 2-core machine (at 4,000 hosts the old 0.5 s start-up ping found 1,553), and
stopping at the number of hosts already known misses exactly the hosts the agent does not
know yet (a leaf site's hosts coming back one heartbeat at a time after a heal).

:func:`gather` listens until the answers stop: it ends when no answer came for ``quiet``
seconds (``first`` before the first answer: an empty lattice costs that much), and at
``window`` seconds in any case (bounded). When ``expect`` is given (a periodic resync: the
hosts already known), the quiet that ends it shrinks to ``settle`` once that many answered,
so a converged resync ends a few milliseconds after its last host, not a quarter second.
:class:`PingWindow` holds the three figures; :data:`FULL` is the window of the agent's first
ping and of a ping after a host (re)joined, :data:`RESYNC` that of the periodic resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg

from lattice.protocol import PingRequest, Subjects, encode
from reconciler.actions import Action, StartActor, StartProvider
from reconciler.observed import ObservedState


@dataclass(frozen=True)
class PingWindow:
    """How long a ping listens (seconds); see :func:`gather`."""

    first: float = 0.5
    quiet: float = 0.25
    settle: float = 0.02
    window: float = 10.0


#: the first ping and the ping after a host (re)joined: every answer, however many
FULL = PingWindow()
#: the periodic resync: ends ``settle`` after the last known host answered
RESYNC = PingWindow()


def wait_for(n: int, expect: int | None, w: PingWindow) -> float:
    """The quiet that ends a gather after ``n`` answers. Pure."""
    if n == 0:
        return w.first
    if expect is not None and n >= expect:
        return w.settle
    return w.quiet


async def gather(nc: Client, subject: str, payload: bytes, *, expect: int | None = None,
                 window: PingWindow = FULL) -> list[bytes]:
    """Publish ``payload`` on ``subject``; the answers' payloads, gathered until none came
    for the quiet :func:`wait_for` gives, or ``window.window`` seconds passed.

    The agent's own lag is no silence of the hosts: on a loaded machine its loop may not
    have read answers waiting in its socket when the quiet runs out (at 10,000 hosts under
    load the first ping ended with 3 hosts). So before ending, the gather sends itself a
    marker on its inbox, through the server: answers the server passed on before the
    marker arrive before it, in order; if any came, it listens on. (Not ``nc.flush``: a
    flush that times out leaves nats-py's read loop to die on the late PONG.)"""
    answers: list[bytes] = []
    arrived, marked = asyncio.Event(), asyncio.Event()
    marker = b"\x00vinculum-ping-marker:" + nc.new_inbox().encode()

    async def on_answer(msg: Msg) -> None:
        if msg.headers and msg.headers.get("Status") == "503":
            return  # the server's "no responders" notice, not an answer
        if msg.data == marker:
            marked.set()
            return
        answers.append(msg.data)
        arrived.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_answer)
    end = time.monotonic() + window.window
    try:
        await nc.publish(subject, payload, reply=inbox)
        while (left := end - time.monotonic()) > 0:  # bounded by the window
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(),
                                       min(left, wait_for(len(answers), expect, window)))
            except TimeoutError:
                before = len(answers)
                marked.clear()
                await nc.publish(inbox, marker)
                with contextlib.suppress(TimeoutError):  # slow or gone: what came is all
                    await asyncio.wait_for(marked.wait(), max(0.0, end - time.monotonic()))
                if len(answers) == before:
                    break
        return list(answers)
    finally:
        await sub.unsubscribe()


async def ping(nc: Client, subjects: Subjects, observed: ObservedState, *, replace: bool,
               full: bool) -> bool:
    """Ping the lattice into ``observed``: with ``replace`` (the agent's first ping) the
    answers are the whole view, else they are merged (a host that did not answer stays
    until its heartbeats lapse). ``full`` hears every host (:data:`FULL`); without it, the
    ping ends once the hosts already known answered (:data:`RESYNC`). Whether hosts new to
    ``observed`` answered a merged ping."""
    answers = await gather(nc, subjects.ping, encode(PingRequest()),
                           expect=None if full or replace else len(observed) or None,
                           window=FULL if full or replace else RESYNC)
    invs = observed.decode_ping(answers)  # an unchanged answer is not parsed again
    if replace:
        observed.reset(invs)
        return False
    return bool(observed.merge_ping(invs))


class JoinSettle:
    """Hosts come back together (a healed leaf link, a restarted rack), but are heard one
    at a time: a host's subscriptions cross a leaf link a moment after another's. Placing
    at the first one puts the replicas of the rest on it, stopped again when they are
    heard (a duplicate start). So after a host (re)joins, starts by auction wait ``settle``
    seconds after the last join, at most ``cap`` seconds from the first join of the burst
    (:meth:`holding_back`); stops and the rest go on. Time comes from ``clock`` (seconds);
    no I/O."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, settle: float = 1.0,
                 cap: float = 5.0) -> None:
        self.clock, self.settle, self.cap = clock, settle, cap
        self._first: float | None = None
        self._last = 0.0
        self._ended = False  # a hold just ended: hear every host once more before placing

    def joined(self) -> None:
        now = self.clock()
        if self._first is None or now - self._last > self.settle:
            self._first = now
        self._last = now

    def hold(self) -> float | None:
        """Seconds to wait before planning, None when the lattice has settled."""
        if self._first is None:
            return None
        left = min(self._last + self.settle, self._first + self.cap) - self.clock()
        if left <= 0:
            self._first = None
            self._ended = True
            return None
        return left

    def ended(self) -> bool:
        """True once after a hold ended: the caller pings every host before it places, as
        a host back with the others may have been heard by no ping yet, and would be
        heard only at its next heartbeat (a CI run placed a duplicate on a healed leaf
        site so)."""
        ended, self._ended = self._ended, False
        return ended

    def holding_back(self, actions: list[Action]) -> list[Action]:
        """``actions`` without the starts by auction while the lattice settles."""
        if self.hold() is None:
            return actions
        return [a for a in actions if not (isinstance(a, StartActor | StartProvider)
                                           and a.host_id is None)]
