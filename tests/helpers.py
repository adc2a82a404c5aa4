"""Test helpers: polling with a deadline (never sleeps as synchronisation)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from lattice.localnats import NatsServer

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll ``check`` until it returns a truthy value, or fail after ``timeout`` seconds.
    A callable ``message`` is called at the failure: a process's log read then, not when
    the wait began."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        result = check()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        last = result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{_text(message)} within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)


def eventually_sync(
    check: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Blocking form of :func:`eventually` for synchronous tests."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{_text(message)} within {timeout}s (last: {result!r})")
        time.sleep(interval)


def _text(message: str | Callable[[], str]) -> str:
    return message if isinstance(message, str) else message()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def serving(server: NatsServer) -> Iterator[NatsServer]:
    """``server`` started for the ``with`` block, stopped after it."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
