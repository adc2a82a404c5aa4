"""``latticectl logs``: the log files of the processes ``up`` started, as ``kubectl logs``.

End to end on one real lattice (``latticectl up --detach``: nats-server, a host and the
agent in a temporary state dir, shared by the module): the default shows the agent's and
the host's lines merged by time and prefixed, ``--tail``/``--level``/``-o json`` narrow
and reshape, an unknown process exits 1, ``-f`` prints a line the agent writes while it
follows and ends by itself when ``down`` stops the agent, and after ``down`` the files are
still read. ``--log-format json`` lines come from lattice.logsetup's own formatter, with
the fields :func:`lattice.logsetup.log_context` puts on them. The parsing and filtering
core is tested on its own below.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from cli.logs_cmd import Filter, Record, merged, parse, render
from lattice.logsetup import log_context, setup_logging
from tests.cliutil import clean_env, run
from tests.helpers import eventually_sync

ROOT = Path(__file__).resolve().parent.parent
TRACEBACK = [
    "2026-12-02 12:41:29,523 ERROR reconciler.agent: reconcile failed; retry in 1.0s",
    "Traceback (most recent call last):",
    '  File "reconciler/agent.py", line 290, in _loop',
    "ValueError: boom",
]


# -- the pure core ---------------------------------------------------------------------


def test_text_nats_and_continuation_lines() -> None:
    lines = ["stray line before any record", *TRACEBACK,
             "2026-12-02 12:41:30,001 INFO reconciler.lease: lease acquired by vm:1"]
    first, failed, lease = parse("agent", lines)
    assert (first.level, first.time, first.message) == (None, None,
                                                        "stray line before any record")
    assert failed.lines == TRACEBACK and failed.level == logging.ERROR
    assert (failed.logger, failed.message) == ("reconciler.agent",
                                               "reconcile failed; retry in 1.0s")
    assert failed.time == datetime(2026, 12, 2, 12, 41, 29, 523000)
    assert lease.level == logging.INFO
    [nats] = parse("nats", ["[7205] 2026/12/02 12:41:26.095574 [WRN] Server is slow"])
    assert (nats.level, nats.logger, nats.message) == (logging.WARNING, "nats-server",
                                                       "Server is slow")
    assert nats.time == datetime(2026, 12, 2, 12, 41, 26, 95574)


def test_a_late_continuation_goes_with_the_record_before() -> None:
    """With -f a traceback's lines may come in a later read: they continue that record."""
    [failed] = parse("agent", TRACEBACK[:1])
    [more] = parse("agent", TRACEBACK[1:], failed)
    assert more.continues and more.lines == TRACEBACK[1:] and more.level == logging.ERROR


def test_filter_by_level_time_and_fields() -> None:
    failed, lease = parse("agent", [*TRACEBACK, "2026-12-02 12:41:31,000 INFO x: lease"])
    stray = Record("agent", ["printed by a provider"], message="printed by a provider")
    warning = Filter(level=logging.WARNING)
    assert [warning(r) for r in (failed, lease, stray)] == [True, False, True]
    late = Filter(since=datetime(2026, 12, 2, 12, 41, 30))
    assert [late(r) for r in (failed, lease, stray)] == [False, True, False]
    [structured] = parse("agent", [json.dumps({
        "time": "2026-12-02 12:41:32,000", "level": "INFO", "logger": "x", "message": "m",
        "entity": "Deployment/echo", "revision": "c0ffee" * 6})])
    by_revision = Filter(fields=(("revision", "c0ffee"),))
    assert by_revision(structured) and not by_revision(lease)
    assert Filter(fields=(("entity", "Deployment/echo"),))(structured)
    assert Filter(fields=(("entity", "echo"),))(structured)  # a kind/name by its name
    assert not Filter(fields=(("entity", "Deployment/counter"),))(structured)
    [named] = parse("agent", ["2026-12-02 12:41:33,000 INFO x: revision c0ffeec0: 2 planned"])
    full = Filter(fields=(("revision", "c0ffee" * 6),))
    assert full(named) and full(structured)  # a text line names a revision's first 8


def test_json_is_text_unless_asked_and_sources_merge_by_time() -> None:
    doc = {"time": "2026-12-02 12:41:32,000", "level": "ERROR", "logger": "reconciler.x",
           "message": "moved", "entity": "MACTOR", "revision": "abc", "exc_info": "Tb\nE: x",
           "host": "host-0", "host_id": "N" * 56}
    [rec] = parse("host-0", [json.dumps(doc)])
    assert render(rec, output="text", prefix=True).splitlines() == [
        "[host-0] 2026-12-02 12:41:32,000 ERROR reconciler.x: moved  "
        "[entity=MACTOR revision=abc]", "[host-0] Tb", "[host-0] E: x"]
    assert json.loads(render(rec, output="json", prefix=False)) == {**doc, "source": "host-0"}
    [failed] = parse("agent", TRACEBACK)
    assert json.loads(render(failed, output="json", prefix=True)) == {
        "time": "2026-12-02 12:41:29,523", "level": "ERROR", "logger": "reconciler.agent",
        "message": "\n".join(["reconcile failed; retry in 1.0s", *TRACEBACK[1:]]),
        "source": "agent"}
    a = parse("agent", ["2026-12-02 10:00:01,000 INFO a: 1", "2026-12-02 10:00:03,000 INFO a: 3"])
    h = parse("host-0", ["2026-12-02 10:00:02,000 INFO h: 2"])
    assert [r.message for r in merged([a, h])] == ["1", "2", "3"]


def test_json_logs_filtered_by_their_context_fields(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Lines written by lattice.logsetup's JSON formatter under log_context, in the logs
    a stopped lattice left: filtered by field, shown as text, or as JSON with -o json."""
    setup_logging("info", "json")
    try:
        log = logging.getLogger("reconciler.executor")
        with log_context(revision="c0ffee" * 6, trace="t-1"):
            with log_context(entity="Deployment/echo"):
                log.info("echo started")
            with log_context(entity="Deployment/counter"):
                log.warning("counter unplaced")
        log.info("no context")
    finally:
        logging.basicConfig(force=True, handlers=[logging.NullHandler()])
    env = clean_env(tmp_path)
    logs = tmp_path / "state" / "logs"
    logs.mkdir(parents=True)
    (logs / "agent.log").write_text(capsys.readouterr().err)
    only = run(env, "logs", "--entity", "Deployment/counter")
    assert only.exit_code == 0, only.output
    [line] = only.stdout.splitlines()
    assert line.endswith("WARNING reconciler.executor: counter unplaced  [entity="
                         f"Deployment/counter revision={'c0ffee' * 2} trace=t-1]"), line
    assert "nothing is up" in only.stderr
    docs = [json.loads(x) for x in run(env, "logs", "--revision", "c0ffee", "-o",
                                       "json").stdout.splitlines()]
    assert [(d["message"], d["entity"], d["source"]) for d in docs] == [
        ("echo started", "Deployment/echo", "agent"),
        ("counter unplaced", "Deployment/counter", "agent")]
    assert run(env, "logs", "--trace", "t-2").stdout == ""
    assert run(env, "logs", "--level", "warning").stdout.count("\n") == 1


def test_no_state_is_exit_1_and_a_remote_lattice_is_named(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    res = run(env, "logs")
    assert res.exit_code == 1 and "nothing is up" in res.output
    remote = run(env, "--nats-url", "nats://nats.lab:4222", "logs", "agent")
    assert remote.exit_code == 1
    assert "logs on the machines that run its agent and hosts" in remote.output
    assert run(env, "logs", "--tail", "-2").exit_code == 2  # a usage error
    assert run(env, "logs", "--since", "soon").exit_code == 2


# -- a real lattice ------------------------------------------------------------------


@dataclass
class Up:
    state_dir: Path
    env: dict[str, str]

    def ctl(self, *args: str) -> Result:
        return run(self.env, "--state-dir", str(self.state_dir), *args)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("logs")
    lattice = Up(tmp / "state", clean_env(tmp))
    started = lattice.ctl("--lattice", "logs", "up", "--detach", "--hosts", "1",
                          "--heartbeat", "500ms")
    try:
        assert started.exit_code == 0, started.output
        yield lattice
    finally:
        lattice.ctl("down")


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_logs_of_a_running_lattice(up: Up) -> None:
    res = up.ctl("logs")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert {line.split("] ", 1)[0] + "]" for line in lines} == {"[agent]", "[host-0]"}
    assert any("[agent]" in x and "agent up:" in x for x in lines)
    assert any("[host-0]" in x and "joined lattice logs" in x for x in lines)
    times = [datetime.fromisoformat(x.split("] ", 1)[1][:23]) for x in lines
             if x.split("] ", 1)[1][:2] == "20"]
    # merged by time (a file itself may be a little out of order: a thread's record can
    # be written after a later one of another thread)
    assert all(b >= a - timedelta(seconds=1) for a, b in pairwise(times)), times

    one = up.ctl("logs", "host-0", "--tail", "1")
    assert one.exit_code == 0 and len(one.stdout.splitlines()) == 1
    assert not one.stdout.startswith("[")  # one process: no prefix
    assert " INFO " not in up.ctl("logs", "agent", "--level", "warning").stdout
    docs = [json.loads(x) for x in up.ctl("logs", "agent", "-o", "json").stdout.splitlines()]
    assert docs and {d["source"] for d in docs} == {"agent"}
    assert any(d["message"].startswith("agent up:") for d in docs)
    assert "Server is ready" in up.ctl("logs", "nats").stdout
    # nothing older than an hour yet (the lattice goes on logging meanwhile)
    assert up.ctl("logs", "--since", "1h").stdout.count("\n") >= len(lines)
    other = up.ctl("--nats-url", "nats://nats.lab:4222", "logs", "agent", "--tail", "1")
    assert other.exit_code == 0 and "not of nats://nats.lab:4222" in other.stderr
    unknown = up.ctl("logs", "host-9")
    assert unknown.exit_code == 1
    assert "no process 'host-9'" in unknown.output and "host-0" in unknown.output


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_follow_prints_new_lines_and_ends_with_the_process(up: Up, tmp_path: Path) -> None:
    out = tmp_path / "follow.out"
    with out.open("wb") as sink:
        follower = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--state-dir", str(up.state_dir), "logs",
             "agent", "-f", "--tail", "1"], stdout=sink, stderr=subprocess.STDOUT,
            cwd=ROOT, env={**os.environ, **up.env})
    try:  # its last line printed: it has read the file, and follows from there
        eventually_sync(lambda: out.read_text().count("\n") >= 1, timeout=60,
                        message=f"the last line of the agent's log\n{out.read_text()}")
        nudged = up.ctl("sync")
        assert nudged.exit_code == 0, nudged.output
        eventually_sync(lambda: "sync nudge received" in out.read_text(), timeout=60,
                        message=f"the nudge's line, followed\n{out.read_text()}")
        assert follower.poll() is None  # still following
        assert up.ctl("down").exit_code == 0
        assert follower.wait(timeout=60) == 0  # the agent is gone: so is -f
        assert "agent stopped" in out.read_text()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    after = up.ctl("logs", "agent", "--tail", "1")
    assert after.exit_code == 0 and "agent stopped" in after.stdout
    assert "nothing is up" in after.stderr


def test_since_is_relative_to_now() -> None:
    now = datetime.now()
    old, new = parse("agent", [f"{(now - timedelta(hours=2)):%Y-%m-%d %H:%M:%S},000 INFO a: old",
                               f"{now:%Y-%m-%d %H:%M:%S},000 INFO a: new"])
    keep = Filter(since=now - timedelta(minutes=5))
    assert (keep(old), keep(new)) == (False, True)


@pytest.mark.parametrize("tail", [0, 1, 3, 7, 40, -1])
@pytest.mark.parametrize("level", [None, logging.ERROR])
def test_tail_reads_the_end_of_the_file_as_the_whole_would(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tail: int, level: int | None) -> None:
    """--tail reads a window at the file's end, growing it until it holds enough records
    (tracebacks cut by the window's start included): the same records as from the whole
    file, and -f goes on from its end either way."""
    from cli.logs_cmd import Source, read_records

    lines: list[str] = []
    for i in range(30):
        if i % 4 == 0:
            lines += [line.replace("29,523", f"{i:02d},000") for line in TRACEBACK]
        else:
            lines.append(f"2026-12-02 12:41:{i:02d},000 INFO reconciler.x: line {i}")
    path = tmp_path / "agent.log"
    path.write_text("\n".join(lines) + "\npartial line being writ")
    keep = Filter(level=level)
    whole = [r for r in parse("agent", lines) if keep(r)]
    expected = whole[-tail:] if tail > 0 else [] if tail == 0 else whole
    monkeypatch.setattr("cli.logs_cmd.TAIL_WINDOW", 150)  # a few lines: it must grow
    src = Source("agent", path)
    got, last_shown = read_records(src, keep, tail)
    assert [r.lines for r in got] == [r.lines for r in expected]
    assert last_shown == keep(list(parse("agent", lines))[-1])  # a late traceback line
    assert src.offset == len(("\n".join(lines) + "\n").encode())


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_json_logs_of_an_up_lattice_follow_one_trace_from_agent_to_host(
        tmp_path: Path) -> None:
    """``up --log-format json``: a reconcile pass's trace goes with its commands, so one
    ``--trace`` shows the agent's lines and the host's for the same work; every line of a
    host names it, the agent's name the revision, an action's the entity."""
    lattice = Up(tmp_path / "state", clean_env(tmp_path))
    started = lattice.ctl("--lattice", "jsonlogs", "up", "--detach", "--hosts", "2",
                          "--heartbeat", "500ms", "--log-format", "json")
    try:
        assert started.exit_code == 0, started.output

        def docs(*args: str) -> list[dict[str, Any]]:
            return [json.loads(x) for x in lattice.ctl("logs", *args, "-o", "json")
                    .stdout.splitlines()]

        def host_started() -> list[dict[str, Any]]:
            return [d for d in docs() if d["source"].startswith("host-")
                    and d["logger"] == "hostagent.commands" and d.get("trace")
                    and d["message"].endswith(" started")]

        first = eventually_sync(host_started, timeout=60, message="a host started something")[0]
        traced = docs("--trace", first["trace"])
        assert {d["source"] for d in traced} >= {"agent", first["source"]}, traced
        agent = [d for d in traced if d["source"] == "agent"]
        assert all(len(d.get("revision", "")) == 40 for d in agent), agent
        assert any(d.get("entity") and d["message"].endswith(": done") for d in agent), agent
        hosts = [d for d in docs() if d["source"].startswith("host-")]
        assert all(d["host"] == d["source"] and len(d["host_id"]) == 56 for d in hosts)
        actor = first["entity"]
        about = {d["source"] for d in docs("--entity", actor[:8])}
        assert {"agent", first["source"]} <= about
        text = lattice.ctl("logs", "--trace", first["trace"]).stdout.splitlines()
        assert text and all(f"trace={first['trace']}]" in line for line in text), text
    finally:
        lattice.ctl("down")
