"""The leader lease: only one agent acts on a lattice at a time.

Several agents may run against one lattice for high availability. The lease is a key in a
JetStream key-value bucket whose entries expire after ``ttl`` seconds. A candidate tries to
``create`` the key (which fails while someone holds it); the holder renews it every
``ttl / 3`` with ``update(last=revision)``, a compare-and-set: if that fails
(``KeyWrongLastSequenceError``), the lease was lost, which is normal, not a crash. When the
holder dies its entry expires, and a candidate takes over within ``ttl + ttl / 3`` (inside
the 2 x TTL the design asks for). On shutdown the holder deletes the key, so a successor
need not wait for the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket

from nats.aio.client import Client
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from lattice.protocol import Subjects, utcnow

log = logging.getLogger(__name__)

LEASE_KEY = "leader"


class Lease:
    """Campaign for and hold the lattice's leader lease; ``is_leader`` tells the state."""

    def __init__(
        self, nc: Client, subjects: Subjects, *, holder: str | None = None, ttl: float = 6.0
    ) -> None:
        self.nc = nc
        self.subjects = subjects
        self.ttl = ttl
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.is_leader = False
        self.changed = asyncio.Event()  # set on every gain or loss
        self._kv: KeyValue | None = None
        self._revision: int | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            js = self.nc.jetstream()
            try:
                self._kv = await js.key_value(self.subjects.lease_bucket)
            except NotFoundError:
                self._kv = await js.create_key_value(
                    bucket=self.subjects.lease_bucket, ttl=self.ttl, history=1
                )
        return self._kv

    def _value(self) -> bytes:
        return json.dumps({"holder": self.holder, "renewed": utcnow().isoformat()}).encode()

    def _set(self, leader: bool, *, why: str = "lost") -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            level = logging.INFO if leader or why != "lost" else logging.WARNING
            log.log(level, "lease %s by %s", "acquired" if leader else why, self.holder)
            self.changed.set()

    async def step(self) -> bool:
        """One campaign or renewal attempt; returns whether we hold the lease after it."""
        try:
            kv = await self._bucket()
            if self.is_leader and self._revision is not None:
                self._revision = await kv.update(LEASE_KEY, self._value(), last=self._revision)
            else:
                self._revision = await kv.create(LEASE_KEY, self._value())
            self._set(True)
        except KeyWrongLastSequenceError:
            self._revision = None
            self._set(False)
        except Exception as exc:  # NATS down or slow: we cannot prove we hold it
            log.debug("lease step failed: %s", exc)
            if self.is_leader:
                self._revision = None
                self._set(False)
        return self.is_leader

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign and renew every ``ttl / 3`` until ``stop``; then release."""
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.ttl / 3)
        finally:
            await self.release()

    async def release(self) -> None:
        """Give the lease up so a successor need not wait for the TTL."""
        if not self.is_leader or self._kv is None:
            return
        try:
            await self._kv.delete(LEASE_KEY, last=self._revision)
        except Exception as exc:
            log.debug("lease release failed: %s", exc)
        self._revision = None
        self._set(False, why="released")
