"""Bursts of commits: the agent follows the newest commit, not every commit (issue 16, 3).

End to end with a real nats-server, three real ``lattice-host`` processes, a real git
repository and the agent as a process: a burst of commits, each moving a provider to a new
vendor, ends on the last commit with a few provider starts, and every commit of the burst
gets a note (``Synced``, or ``Superseded by`` a newer one). Beside it, the parts on their
own against real repositories and real hosts: the watcher's settling, the skipped commits,
what :class:`~reconciler.follow.Follow` owes, and the executor ending a superseded pass
between its phases. No mocks; waits are polls with deadlines, never sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import git
import pytest
import yaml

from gitsync.source import GitSource
from gitsync.status import read_note
from gitsync.watch import MAX_HOLD, commits_between, watch_heads
from lattice.natsutil import connect
from lattice.protocol import EventType, Subjects
from lattice.status import Phase
from reconciler import actions as A
from reconciler.executor import Executor
from reconciler.follow import Follow, superseded_message
from reconciler.observed import ObservedState
from reconciler.revision import Revision
from tests.cliutil import clean_env, run
from tests.helpers import eventually
from tests.lattice_e2e import ACTOR, EventLog, Lattice, lat, repo, settled, three_hosts

__all__ = ["lat", "repo"]  # fixtures

CAP = "burst:kv"
BURST = 12
#: The burst's pace: the issue's burst, 20 commits in 0.33 s.
PACE = 0.016


def files(vendor: str, n: int) -> dict[str, dict | None]:
    return {
        "deployments/burst.yaml": {
            "kind": "Deployment", "metadata": {"name": "burst"},
            "spec": {"actors": [{"id": ACTOR}],
                     "providers": [{"id": CAP, "vendor_id": vendor}]}},
        "bindings/burst.yaml": {
            "kind": "BindingSet", "metadata": {"name": "burst"},
            "spec": {"bindings": [{"capability_id": CAP, "actor": ACTOR, "vendor_id": vendor,
                                   "values": {"N": str(n)}}]}},
    }


def prepare(lat: Lattice, n: int) -> list[str]:
    """``n`` commits on top of the branch, each moving the provider to vendor ``v<i>``,
    made without moving the branch (GitPython: 40-60 ms a commit on a loaded machine,
    slower than a burst)."""
    shas: list[str] = []
    root = Path(lat.repo.working_tree_dir or ".")
    parent = lat.repo.head.commit
    for i in range(1, n + 1):
        for rel, doc in files(f"v{i}", i).items():
            (root / rel).write_text(yaml.safe_dump(doc, sort_keys=False))
            lat.repo.index.add([rel])
        parent = lat.repo.index.commit(f"burst {i}", parent_commits=[parent], head=False)
        shas.append(parent.hexsha)
    return shas


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_a_burst_ends_on_its_last_commit_with_few_starts(lat: Lattice) -> None:
    await three_hosts(lat)
    first = lat.commit(files("v0", 0), "v0")
    lat.agent()
    await eventually(lambda: lat.note_phase(first, Phase.SYNCED), timeout=30,
                     message="the first commit is Synced")
    async with EventLog(lat.nc, lat.lattice) as events:
        await settled(lat)
        burst = prepare(lat, BURST)
        mark = asyncio.get_running_loop().time()
        for sha in burst:  # the branch moves commit by commit, at the burst's pace
            lat.repo.head.reference.set_commit(sha)
            await asyncio.sleep(PACE)  # pacing the input, not waiting for a result
        last = burst[-1]
        await eventually(lambda: lat.note_phase(last, Phase.SYNCED), timeout=30,
                         message="the last commit of the burst is Synced")
        invs = await settled(lat)
        starts = events.of(EventType.PROVIDER_STARTED, since=mark)
    assert 1 <= len(starts) <= 3, [e.data.get("vendor_id") for _, e in starts]
    running = [(p.vendor_id, inv.name) for inv in invs.values() for p in inv.providers
               if p.capability_id == CAP]
    assert [v for v, _ in running] == [f"v{BURST}"], running
    bound = [b.values for inv in invs.values() for b in inv.bindings if b.capability_id == CAP]
    assert bound == [{"N": str(BURST)}], bound

    async def noted() -> dict[str, tuple[Phase, str]] | None:
        notes = {sha: await asyncio.to_thread(read_note, lat.repo, sha)
                 for sha in [first, *burst]}
        out = {sha: (n.phase, n.message) for sha, n in notes.items() if n is not None}
        done = len(out) == len(notes) and all(p is not Phase.PROGRESSING
                                              for p, _ in out.values())
        return out if done else None
    notes = await eventually(noted, timeout=20, message="every commit of the burst noted")
    assert notes[first][0] is Phase.SYNCED  # reached before the burst: stays Synced
    superseded = 0
    for i, sha in enumerate(burst[:-1]):
        phase, message = notes[sha]
        if phase is Phase.SUPERSEDED:
            by = message.removeprefix("Superseded by ")
            assert by in burst[i + 1:], f"commit {i + 1} superseded by {by}, not a newer one"
            superseded += 1
        else:
            assert phase is Phase.SYNCED, (i + 1, phase, message)
    assert superseded >= BURST - 3, notes  # followed at most 3 of them: the rest skipped
    env = clean_env(lat.tmp) | {"LATTICECTL_REPO": str(lat.repo.working_tree_dir)}
    history = run(env, "history", "--limit", str(BURST + 1))
    assert history.exit_code == 0, history.output
    phases = [" ".join(line.split()[2:5]) for line in history.stdout.splitlines()[1:]]
    assert phases[0].startswith("Synced") and phases[-1].startswith("Synced"), phases
    shown = [p for p in phases if p.startswith("Superseded by ")]
    assert len(shown) == superseded, phases
    assert all(p.split()[2] in {sha[:12] for sha in burst} for p in shown), phases


# ---------------------------------------------------------------------- the parts

def commit(r: git.Repo, n: int) -> str:
    path = Path(r.working_tree_dir or ".") / "n.txt"
    path.write_text(f"{n}\n")
    r.index.add(["n.txt"])
    return r.index.commit(f"n {n}").hexsha


@pytest.fixture
def source(repo: git.Repo, tmp_path: Path) -> GitSource:
    return GitSource.open(str(repo.working_tree_dir), data_dir=tmp_path / "data")


async def test_watch_settles_a_burst_while_busy_and_yields_the_newest(
        repo: git.Repo, source: GitSource) -> None:
    stop = asyncio.Event()
    done = asyncio.Event()
    yielded: list[str] = []
    shas: list[str] = []

    async def burst() -> None:  # 5 commits ~50 ms apart, while the watch goes on
        for n in range(5):
            if n:
                await asyncio.sleep(0.05)  # pacing the input, not waiting for a result
            shas.append(await asyncio.to_thread(commit, repo, n))
        done.set()
        if yielded[-1] == shas[-1]:  # the watch got there first
            stop.set()

    tasks = []
    async for sha in watch_heads(source, stop=stop, settle=0.5, busy=lambda: True):
        yielded.append(sha)
        if len(yielded) == 1:
            tasks.append(asyncio.create_task(burst()))
        elif done.is_set() and sha == shas[-1]:
            stop.set()
    await asyncio.gather(*tasks)
    assert yielded[1:] == [shas[-1]]  # without the settle: a head per batch of events


async def test_watch_does_not_hold_when_the_consumer_is_not_busy(
        repo: git.Repo, source: GitSource) -> None:
    stop = asyncio.Event()
    yielded: list[str] = []
    expect: list[str] = []
    loop = asyncio.get_running_loop()
    took = 0.0
    async for sha in watch_heads(source, stop=stop, settle=30.0, busy=lambda: False):
        yielded.append(sha)
        if len(yielded) == 1:
            expect.append(await asyncio.to_thread(commit, repo, 1))
            committed = loop.time()
        else:
            took = loop.time() - committed
            stop.set()
    assert yielded[1:] == expect
    assert took < MAX_HOLD, took  # a held head waits MAX_HOLD (the 30 s settle's cap)


def test_commits_between_names_what_a_new_head_skipped(repo: git.Repo,
                                                       source: GitSource) -> None:
    old = repo.head.commit.hexsha
    shas = [commit(repo, n) for n in range(4)]
    assert commits_between(source, old, shas[-1], limit=10) == shas[-2::-1]
    assert commits_between(source, old, shas[-1], limit=2) == shas[-2:-4:-1]
    assert commits_between(source, shas[-1], shas[-1], limit=10) == []
    assert commits_between(source, "0" * 40, shas[-1], limit=10) == []  # unknown: none


async def test_follow_owes_superseded_notes_to_what_never_synced(
        repo: git.Repo, source: GitSource) -> None:
    now = datetime.now(UTC)
    base = repo.head.commit.hexsha
    shas = [commit(repo, n) for n in range(4)]
    follow = Follow()
    synced = Revision(sha=base, first_seen=now, phase=Phase.SYNCED)
    follow.seen(base)
    assert not Follow.busy(synced) and Follow.busy(Revision(sha=shas[0], first_seen=now))
    applied = follow.replaced(None, synced)
    first = Revision(sha=shas[0], first_seen=now)
    follow.seen(shas[0])
    applied = follow.replaced(applied, first)
    assert applied is first  # base was Synced: no note owed (checked below)
    assert follow.replaced(first, Revision(sha=shas[0], first_seen=now)) is first  # same
    last = Revision(sha=shas[3], first_seen=now)
    follow.seen(shas[3])  # shas[1], shas[2] skipped
    assert follow.replaced(first, last) is last
    written: list[tuple[str, Phase, str]] = []

    async def write(rev: Revision, phase: Phase, message: str) -> None:
        written.append((rev.sha, phase, message))

    busy = asyncio.Event()
    busy.set()
    assert await follow.note_superseded(source, write, until=(busy,)) == 0  # not idle
    busy.clear()
    assert await follow.note_superseded(source, write, until=(busy,)) == 3
    assert sorted(written) == sorted((sha, Phase.SUPERSEDED, superseded_message(shas[3]))
                                     for sha in shas[:3])  # not base, not shas[3]
    assert follow.owed == 0


@pytest.mark.e2e
@pytest.mark.timeout(60)
async def test_executor_ends_a_superseded_pass_between_phases(lat: Lattice) -> None:
    await three_hosts(lat)
    invs = await settled(lat)
    nc = await connect(lat.url)
    try:
        observed = ObservedState()
        observed.reset(list(invs.values()))
        ex = Executor(nc, Subjects(lat.lattice), observed)
        start = A.StartProvider(capability_id=CAP, binding_name="default", vendor_id="new",
                                constraints=(), annotations=(), owners=("burst",),
                                reason="test")
        victim = next(iter(invs))
        stop = A.StopProvider(host_id=victim, capability_id="other:cap",
                              binding_name="default", reason="test")
        done = await ex.execute([start, stop],
                                superseded=lambda: "newer" if ex.commands_sent else None)
    finally:
        await nc.close()
    assert (done, ex.commands_sent) == (1, 1)  # the start ran; the STOP phase did not
