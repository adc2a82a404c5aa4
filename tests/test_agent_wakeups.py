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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lattice.localnats import NatsServer
from lattice.natsutil import NatsOptions
from reconciler import agent as agent_module
from reconciler.agent import Agent
from reconciler.config import AgentConfig
from tests.gitrepo import commit_files, deployment
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


@pytest.mark.timeout(60)
async def test_a_new_revisions_pass_goes_before_a_resync_ping(
        nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resync that fell due while a revision was evaluated waits for that revision's
    first pass: at 10,000 hosts, pinging every host between the evaluation and the pass
    delayed the first command by seconds (bench_scale). The evaluation is made to last
    several resync periods, so a resync is due when it ends; every resync ping is then
    recorded with whether a revision was still waiting for its first pass."""
    repo = init_gitops(tmp_path)
    agent = Agent(AgentConfig(repo=str(repo.working_tree_dir), data_dir=tmp_path / "data",
                              nats=NatsOptions(url=nats_server.url), lattice="resyncwait",
                              resync=0.05, lease_ttl=2.0))
    real_ping, waiting = agent._ping, []

    async def ping(*, replace: bool) -> None:
        if not replace and not agent.rejoined:  # a resync's ping (not a join's, not start-up)
            waiting.append(agent.applied is not agent.passed)
        await real_ping(replace=replace)

    monkeypatch.setattr(agent, "_ping", ping)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        await eventually(lambda: agent.reconciles >= 2 and len(waiting) >= 2, timeout=30,
                         message="the agent resynced")
        source = agent.source
        assert source is not None
        real_evaluate = source.evaluate

        def slow_evaluate(*args: Any, **kw: Any) -> Any:
            time.sleep(0.3)  # six resync periods: a resync falls due meanwhile
            return real_evaluate(*args, **kw)

        monkeypatch.setattr(source, "evaluate", slow_evaluate)
        before = len(waiting)
        sha = commit_files(repo, {"deployments/a.yaml": deployment("a")}, "a")
        await eventually(lambda: agent.passed is not None and agent.passed.sha == sha
                         and len(waiting) >= before + 2, timeout=30,
                         message="the new revision's pass, then resyncs")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        repo.close()
    assert not any(waiting), waiting
