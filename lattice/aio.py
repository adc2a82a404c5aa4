"""Small asyncio helpers shared by the agent's loops and the git watcher.

Kernel code: imports nothing of ours, does no I/O.
"""

from __future__ import annotations

import asyncio


async def wait_any(*events: asyncio.Event | None, timeout: float | None) -> None:
    """Return once any of ``events`` is set (``None`` entries are skipped), or after
    ``timeout`` seconds (``None``: no limit); at once when one is set already."""
    live = [e for e in events if e is not None]
    if any(e.is_set() for e in live):
        return
    waiters = [asyncio.create_task(e.wait()) for e in live]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
