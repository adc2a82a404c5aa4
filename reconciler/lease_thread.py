"""The leader lease on a thread of its own, with its own NATS connection and event loop.

The :class:`~reconciler.lease.Lease` is renewed every TTL/3 with a request to JetStream. On
the agent's loop, that renewal's answer queued behind everything else the loop had to do:
at 10,000 hosts a start of every deployment is 10,000 acks and 10,000 events read and
handled on that loop, and under load the answer came more than a TTL after the request
-- the agent lost the lease in the middle of the pass it was running (bench_scale, issue
15 §4). :class:`LeaseThread` runs the same Lease on a thread with its own loop and its own
connection, whose socket carries nothing but the lease: the main loop's work, however
long, does not delay a renewal (the thread needs the GIL only for a few milliseconds per
renewal, and Python hands it over every 5 ms).

The agent reads :attr:`LeaseThread.is_leader` (a clock comparison, safe from any thread)
and waits on :attr:`LeaseThread.changed`, an ``asyncio.Event`` of the agent's loop, set from
the lease thread with ``call_soon_threadsafe`` (never ``set()`` across threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading

from lattice.natsutil import NatsOptions, connect
from lattice.protocol import Subjects
from reconciler.lease import Lease

log = logging.getLogger(__name__)


class LeaseThread:
    """``await start()`` (connects, campaigns once; raises what that raises, e.g.
    :class:`~reconciler.lease.LeaseTTLError`), then renews on its thread until
    ``await stop()``, which releases the lease and joins the thread."""

    def __init__(self, nats: NatsOptions, subjects: Subjects, *, holder: str | None = None,
                 ttl: float = 6.0) -> None:
        self._nats = nats
        self._subjects = subjects
        self._ttl = ttl
        self._holder = holder
        self.changed = asyncio.Event()  # of the loop that calls start()
        self._lease: Lease | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None  # of the lease thread's loop
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)

    @property
    def holder(self) -> str:
        return self._lease.holder if self._lease is not None else (self._holder or "")

    @property
    def is_leader(self) -> bool:
        return self._lease is not None and self._lease.is_leader

    async def start(self) -> bool:
        """Start the thread and wait for its first campaign; whether it won."""
        self._main = asyncio.get_running_loop()
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._error is not None:
            raise self._error
        return self.is_leader

    async def stop(self) -> None:
        """Release the lease (its holder deletes the key) and end the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # its loop ended already
                loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, 30.0)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
            else:
                log.exception("lease thread failed")
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # named apart from the agent's main connection: the server's connz tells them apart
        name = f"{self._nats.name or 'vinculum'}-lease"
        nc = await connect(dataclasses.replace(self._nats, name=name))
        try:
            self._lease = lease = Lease(nc, self._subjects, holder=self._holder, ttl=self._ttl)
            await lease.step()
            self._ready.set()
            forwarding = asyncio.create_task(self._forwarding(lease), name="lease-changed")
            try:
                await lease.run(self._stop)  # releases the lease when stopped
            finally:
                forwarding.cancel()
                await asyncio.gather(forwarding, return_exceptions=True)
                self._forward()  # released: the agent sees it
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _forwarding(self, lease: Lease) -> None:
        while True:
            await lease.changed.wait()
            lease.changed.clear()
            self._forward()

    def _forward(self) -> None:
        """Set :attr:`changed` on the agent's loop (thread-safe)."""
        main = self._main
        if main is not None and not main.is_closed():
            with contextlib.suppress(RuntimeError):  # the agent's loop ended
                main.call_soon_threadsafe(self.changed.set)
