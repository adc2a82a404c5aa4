"""The agent's wake-ups happen on its event loop's thread (found by the engine-fault tests
of issue 15 §3).

``asyncio.Event`` is not thread-safe. ``Agent.run`` schedules its resync with APScheduler's
``AsyncIOScheduler``, whose executor runs a plain (non-async) job function in the loop's
default thread pool, so the resync job (then a plain function, now the coroutine
``Agent._resync_soon``) called ``self.wake.set()`` from a worker
thread. When that ``set()`` lands between ``Event.wait()``'s check of the flag and its
registering a waiter on the loop thread, the waiter is never woken while the flag stays
set, so every later ``set()`` is a no-op: the main loop sleeps in
``wait_any(self.wake, stop, timeout=None)`` for ever while the lease task goes on renewing
the lease, and no other agent can take over. Seen on real processes (``tests/
test_cluster_faults.py``, ``tests/test_partition.py``, about 1 run in 10 under load): the
agent logged nothing for 60-90 s after a host was dropped; a dump of its tasks showed the
main loop in ``wait_any`` and the resync's worker threads idle.

The test runs a real agent in-process (real nats-server, real git repository) with a fast
resync and records the thread of every ``wake.set()``: all must be the loop's.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lattice.localnats import NatsServer
from lattice.natsutil import NatsOptions
from reconciler import agent as agent_module
from reconciler.agent import Agent
from reconciler.config import AgentConfig
from tests.helpers import eventually
from tests.lattice_e2e import init_gitops


class ThreadRecordingEvent(asyncio.Event):
    """An ``asyncio.Event`` that records the thread of every ``set()``."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def set(self) -> None:
        self.threads.append(threading.get_ident())
        super().set()


@pytest.mark.timeout(60)
async def test_every_wake_up_is_set_on_the_loop_thread(nats_server: NatsServer,
                                                      tmp_path: Path) -> None:
    repo = init_gitops(tmp_path)
    agent = Agent(AgentConfig(repo=str(repo.working_tree_dir), data_dir=tmp_path / "data",
                              nats=NatsOptions(url=nats_server.url), lattice="wakeups",
                              resync=0.05, lease_ttl=2.0))
    wake = ThreadRecordingEvent()
    agent.wake = wake
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        # 20 resync periods (1 s): the resync alone sets it that often
        await eventually(lambda: len(wake.threads) >= 20, timeout=30,
                         message="the agent woke its loop 20 times")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        repo.close()
    loop_thread = threading.get_ident()
    others = [t for t in wake.threads if t != loop_thread]
    assert others == [], f"{len(others)} of {len(wake.threads)} wake-ups set off the loop"


@pytest.mark.timeout(60)
async def test_plan_and_assessment_run_off_the_loop(nats_server: NatsServer, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass over 10,000 entities plans and assesses for seconds: on the loop's thread it
    held up the lease's renewals and the lattice's events (issue 15 §4). Both run on a
    worker thread: the real ``plan`` and ``make_report``, their thread recorded."""
    threads: dict[str, set[int]] = {"plan": set(), "make_report": set()}

    def recording(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            threads[name].add(threading.get_ident())
            return real(*args, **kw)
        return call

    for name in threads:
        monkeypatch.setattr(agent_module, name, recording(name, getattr(agent_module, name)))
    repo = init_gitops(tmp_path)
    agent = Agent(AgentConfig(repo=str(repo.working_tree_dir), data_dir=tmp_path / "data",
                              nats=NatsOptions(url=nats_server.url), lattice="offloop",
                              resync=0.2, lease_ttl=2.0))
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await eventually(lambda: all(threads.values()) and agent.reconciles >= 2, timeout=30,
                         message="the agent planned and assessed")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        repo.close()
    loop_thread = threading.get_ident()
    assert all(loop_thread not in ts for ts in threads.values()), threads
