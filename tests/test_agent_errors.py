"""Errors decide what the agent's loop does next, and a failed pass still writes status.

The agent runs against a real nats-server (its lease in a real JetStream bucket); the
status writer is a recorder of what would go to git. A pass is made to fail by an
executor whose ``forget`` (the first thing a pass calls) raises the test's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from lattice.errors import TransientError
from lattice.localnats import NatsServer
from lattice.manifests import DesiredState
from lattice.natsutil import NatsOptions, connect
from lattice.protocol import Subjects, utcnow
from lattice.status import Phase, StatusReport
from reconciler.agent import PASS_FAILED, Agent
from reconciler.config import AgentConfig
from reconciler.executor import Executor
from reconciler.lease import Lease
from reconciler.revision import Revision
from tests.helpers import eventually


class Failing(Executor):
    """An executor whose next passes raise ``errors`` (one each), then work."""

    errors: list[Exception]

    def forget(self, keep: Iterable[str]) -> None:
        super().forget(keep)
        if self.errors:
            raise self.errors.pop(0)


class Recorder:
    """What the agent would write to git."""

    def __init__(self) -> None:
        self.reports: list[StatusReport] = []

    def publish(self, report: StatusReport, **kw: object) -> None:
        self.reports.append(report)

    def note(self, sha: str, note: object) -> None:
        pass


@pytest.fixture
async def agent(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Agent]:
    """A leading agent with an empty desired state, a Failing executor and a Recorder."""
    subjects = Subjects("agent-errors")
    nc = await connect(nats_server.url)
    a = Agent(AgentConfig(repo="unused", nats=NatsOptions(url=nats_server.url),
                          data_dir=tmp_path, lattice="agent-errors"))
    a.lease = Lease(nc, subjects, holder="only", ttl=30.0)
    assert await a.lease.step()
    ex = Failing(nc, subjects, a.observed)
    ex.errors = []
    a.executor = ex
    a.writer = Recorder()  # type: ignore[assignment]
    a._seeded = True  # nothing to read back from the recorder
    a.desired = DesiredState(revision="0" * 40)
    a.applied = Revision(sha="0" * 40, first_seen=utcnow())
    try:
        yield a
    finally:
        await a.lease.release()
        await nc.close()


def failing(a: Agent) -> Failing:
    assert isinstance(a.executor, Failing)
    return a.executor


def reports(a: Agent) -> list[StatusReport]:
    assert isinstance(a.writer, Recorder)
    return a.writer.reports


async def test_a_failed_pass_writes_degraded_status_with_the_error(agent: Agent) -> None:
    failing(agent).errors = [RuntimeError("boom")]
    with pytest.raises(RuntimeError, match="boom"):
        await agent.reconcile_once()
    [degraded] = reports(agent)
    assert degraded.summary.phase is Phase.DEGRADED
    assert degraded.summary.errors == ["reconcile failed: RuntimeError: boom"]
    assert await agent.reconcile_once() is Phase.SYNCED  # the next pass forgets it
    assert reports(agent)[-1].summary.phase is Phase.SYNCED
    assert reports(agent)[-1].summary.errors == []
    assert PASS_FAILED not in failing(agent).failures


async def test_the_loop_retries_a_transient_failure_after_its_delay_and_a_bug_after_the_backoff(
    agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing wakes the loop after the first pass: each retry comes from the loop's own
    wait, after the error's delay (0.05 s) or the pass backoff (0.2 s at most)."""
    failing(agent).errors = [TransientError("host busy", delay=0.05), KeyError("bug")]
    stop = asyncio.Event()
    loop = asyncio.create_task(agent._loop(stop))
    try:
        agent.wake.set()
        await eventually(lambda: agent.reconciles == 3 and reports(agent)[-1].summary.phase
                         is Phase.SYNCED, timeout=5, interval=0.01,
                         message="two failed passes, retried by the loop, then a good one")
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
    phases = [r.summary.phase for r in reports(agent)]
    assert phases == [Phase.DEGRADED, Phase.DEGRADED, Phase.SYNCED]
    assert reports(agent)[0].summary.errors == ["reconcile failed: TransientError: "
                                                "vinculum: host busy"]
    bug = [r for r in caplog.records if "reconcile failed; retry in" in r.getMessage()]
    assert len(bug) == 1 and bug[0].exc_info is not None  # the bug's traceback is logged
    assert agent.reconciles == 3  # and nothing more: a synced loop waits
