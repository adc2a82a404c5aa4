"""The leader lease: only one agent acts on a lattice at a time.

Several agents may run against one lattice for high availability. The lease is a key in a
JetStream key-value bucket whose entries expire after ``ttl`` seconds. A candidate tries to
``create`` the key (which fails while someone holds it); the holder renews it every
``ttl / 3`` with ``update(last=revision)``, a compare-and-set: if that fails
(``KeyWrongLastSequenceError``), the lease was lost, which is normal, not a crash. When the
holder dies its entry expires, and a candidate takes over within ``ttl + ttl / 3`` (inside
the 2 x TTL the design asks for). Each attempt waits at most ``ttl / 3`` for JetStream's
answer, and a failed one (a timeout while a cluster re-elects the bucket's leader, after a
partition heals) is retried after ``ttl / 12``, not ``ttl / 3``: a holder has several
tries before its hold lapses, not one. On shutdown the holder deletes the key, so a successor
need not wait for the TTL: the followers watch the key and campaign as soon as it is
deleted, instead of at their next ``ttl / 3`` tick.

The holder counts its hold from the moment it sent the create or renewal that the server
accepted: :attr:`Lease.is_leader` turns False once ``ttl`` has passed since then on the
lease's clock (:mod:`lattice.clock`, injected), even when no renewal has answered (NATS
slow or gone): by then the server may have expired the entry and handed it on, so acting
longer could mean two leaders.

The bucket is made in the connection's JetStream domain with its replicas
(:func:`lattice.natsutil.jetstream`, ``--js-domain`` and ``--replicas`` of the agent).
The TTL is the bucket's (the ``max_age`` of its stream ``KV_<bucket>``), fixed when the
bucket is created. An agent that finds the bucket with another TTL than its own updates the
stream to its ``ttl`` (and says so); if the server refuses, the lease cannot be trusted to
expire when this agent thinks, so it stops with a :class:`LeaseTTLError` naming both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket

from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from lattice.aio import wait_any
from lattice.clock import Clock, monotonic
from lattice.errors import PermanentError
from lattice.natsutil import jetstream, js_replicas
from lattice.protocol import Subjects, utcnow
from reconciler.errors import ReconcilerError

log = logging.getLogger(__name__)

LEASE_KEY = "leader"


class LeaseTTLError(ReconcilerError, PermanentError):
    """The lease bucket's TTL differs from ours and could not be changed."""

    def __init__(self, bucket: str, bucket_ttl: float | None, ttl: float, why: str) -> None:
        super().__init__(
            f"lease bucket {bucket} has a TTL of {_seconds(bucket_ttl)}, but --lease-ttl is "
            f"{_seconds(ttl)}, and updating the bucket failed ({why}); run every agent of "
            f"the lattice with --lease-ttl {_seconds(bucket_ttl)}, or delete the bucket")
        self.bucket, self.bucket_ttl, self.ttl = bucket, bucket_ttl, ttl


def _seconds(ttl: float | None) -> str:
    return "none (entries never expire)" if not ttl else f"{ttl:g}s"


class Lease:
    """Campaign for and hold the lattice's leader lease; ``is_leader`` tells the state."""

    def __init__(
        self, nc: Client, subjects: Subjects, *, holder: str | None = None, ttl: float = 6.0,
        clock: Clock = monotonic, replicas: int | None = None,
    ) -> None:
        self.nc = nc
        #: replicas of the bucket if this lease creates it (None: the connection's
        #: ``NatsOptions.js_replicas``, which the agent's ``--replicas`` sets)
        self.replicas = replicas
        self.subjects = subjects
        self.ttl = ttl
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self._clock = clock
        self._leader = False  # the last step won or renewed the lease
        self._expires = float("-inf")  # on our clock: when the server may expire our hold
        self.changed = asyncio.Event()  # set on every gain or loss
        self._kv: KeyValue | None = None
        self._revision: int | None = None
        self._failed = False  # the last step raised (no answer): retry soon

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            js = jetstream(self.nc)
            bucket = self.subjects.lease_bucket
            try:
                kv = await js.key_value(bucket)
            except NotFoundError:
                kv = await js.create_key_value(
                    bucket=bucket, ttl=self.ttl, history=1,
                    replicas=self.replicas or js_replicas(self.nc))
            else:
                await self._align_ttl(js, bucket)
            self._kv = kv
        return self._kv

    async def _align_ttl(self, js: JetStreamContext, bucket: str) -> None:
        """Make the existing bucket's TTL ours, or raise :class:`LeaseTTLError`."""
        info = await js.stream_info(f"KV_{bucket}")
        old = info.config.max_age
        if old is not None and abs(old - self.ttl) < 1e-3:
            return
        try:
            # as when a bucket is made: the duplicate window may not exceed the TTL
            await js.update_stream(info.config, max_age=self.ttl,
                                   duplicate_window=min(120.0, self.ttl))
        except Exception as exc:
            raise LeaseTTLError(bucket, old, self.ttl, f"{type(exc).__name__}: {exc}") from exc
        log.warning("lease bucket %s had a TTL of %s; updated to --lease-ttl %s", bucket,
                    _seconds(old), _seconds(self.ttl))

    def _value(self) -> bytes:
        return json.dumps({"holder": self.holder, "renewed": utcnow().isoformat()}).encode()

    @property
    def is_leader(self) -> bool:
        """Whether we hold the lease: the last step won or renewed it, less than ``ttl``
        ago (counted from when that request was sent)."""
        return self._leader and self._clock() < self._expires

    def expires_in(self) -> float:
        """Seconds until our hold lapses unless renewed (0 when we do not hold it)."""
        return max(0.0, self._expires - self._clock()) if self._leader else 0.0

    def _set(self, leader: bool, *, why: str = "lost") -> None:
        if leader != self._leader:
            self._leader = leader
            level = logging.INFO if leader or why != "lost" else logging.WARNING
            log.log(level, "lease %s by %s", "acquired" if leader else why, self.holder)
            self.changed.set()

    async def step(self) -> bool:
        """One campaign or renewal attempt; returns whether we hold the lease after it."""
        self._failed = False
        try:
            kv = await self._bucket()
            sent = self._clock()  # the server's TTL runs from about now, not from the answer
            if self._revision is not None:  # ours (written by us, or the key names us)
                write = kv.update(LEASE_KEY, self._value(), last=self._revision)
            else:
                write = kv.create(LEASE_KEY, self._value())
            # no longer than a renewal period: a later try may find a new stream leader
            self._revision = await asyncio.wait_for(write, self.ttl / 3)
            self._expires = sent + self.ttl
            self._set(True)
        except KeyWrongLastSequenceError:
            # ours all the same when the key names us: a renewal that landed but whose
            # answer was lost moved the revision; the next step renews from the new one
            self._revision = await self._our_revision()
            if self._revision is None:
                self._set(False)
        except LeaseTTLError:
            raise  # no retry fixes it
        except Exception as exc:  # NATS down or slow: the hold lapses by the clock
            log.debug("lease step failed: %r", exc)  # (is_leader), not at the first miss
            self._failed = self._leader  # a holder retries soon; a candidate at ttl / 3
        if self._leader and not self.is_leader:
            self._revision = None
            self._set(False)
        return self.is_leader

    async def _our_revision(self) -> int | None:
        """The lease key's revision when its value names us as the holder, else None."""
        try:
            entry = await self._kv.get(LEASE_KEY) if self._kv is not None else None
            value = json.loads(entry.value or b"{}") if entry is not None else {}
        except Exception as exc:  # gone, unreadable, or NATS slow: not provably ours
            log.debug("lease read failed: %s", exc)
            return None
        if isinstance(value, dict) and value.get("holder") == self.holder and entry:
            return int(entry.revision or 0) or None
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign and renew every ``ttl / 3`` until ``stop``; then release. A follower
        also campaigns at once when the holder releases the key (it watches it), so a
        graceful hand-over takes a round trip, not up to ``ttl / 3``."""
        freed = asyncio.Event()
        watching: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                freed.clear()
                await self.step()
                if watching is None and self._kv is not None:  # the bucket exists now
                    watching = asyncio.create_task(self._watch_release(self._kv, freed, stop),
                                                   name="lease-release")
                await wait_any(stop, freed,
                               timeout=self.ttl / (12 if self._failed else 3))
        finally:
            if watching is not None:
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)
            await self.release()

    async def _watch_release(self, kv: KeyValue, freed: asyncio.Event,
                             stop: asyncio.Event) -> None:
        """Set ``freed`` whenever the lease key is deleted while someone else holds it."""
        try:
            watcher = await kv.watch(LEASE_KEY)
        except Exception as exc:  # no watch: the ttl / 3 campaign still works
            log.debug("lease watch unavailable: %s", exc)
            return
        try:
            async for entry in watcher:
                released = entry is not None and entry.operation in ("DEL", "PURGE")
                if released and not self.is_leader and not stop.is_set():
                    freed.set()
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def release(self) -> None:
        """Give the lease up so a successor need not wait for the TTL."""
        if not self._leader or self._kv is None:
            return
        try:
            await self._kv.delete(LEASE_KEY, last=self._revision)
        except Exception as exc:
            log.debug("lease release failed: %s", exc)
        self._revision = None
        self._set(False, why="released")

