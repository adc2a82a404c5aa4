"""lattice.aio.wait_any: returns on the first event set, at once if one is, or at the
timeout; leaves no waiter behind."""

from __future__ import annotations

import asyncio
import time

from lattice.aio import wait_any


async def test_returns_when_one_is_set_and_cleans_up() -> None:
    a, b = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, b.set)
    t = time.monotonic()
    await wait_any(a, None, b, timeout=10)
    assert b.is_set() and time.monotonic() - t < 5
    await asyncio.sleep(0)  # let the cancelled waiters finish
    others = [x for x in asyncio.all_tasks() if x is not asyncio.current_task()]
    assert not [x for x in others if not x.done()]


async def test_at_once_when_already_set_and_times_out_otherwise() -> None:
    done, never = asyncio.Event(), asyncio.Event()
    done.set()
    await asyncio.wait_for(wait_any(never, done, timeout=None), 1)
    t = time.monotonic()
    await wait_any(never, timeout=0.05)
    assert not never.is_set() and time.monotonic() - t >= 0.05
