"""Issue 17's fixes, each against the real thing: one way to read durations in all three
programs, ``vinculum --log-level`` checked by click, ``request`` failing on a
``Nats-Service-Error`` reply (a real nats-server and responder), ``down``'s pid check with
psutil on real processes, and the repository remembered after ``down``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from cli.localstack import ProcRecord, is_ours, stop_records
from cli.settings import Settings
from hostagent.main import main as host_main
from lattice.localnats import NatsServer
from lattice.natsutil import NatsOptions, connect
from tests.cliutil import clean_env, run


def test_status_and_request_read_timeouts_the_same_way(tmp_path: Path) -> None:
    env = clean_env(tmp_path) | {"LATTICECTL_REPO": str(tmp_path / "none")}
    for args in (["status", "--wait", "--timeout", "2s"], ["status", "--timeout", "1m30s"]):
        res = run(env, *args)
        assert "Invalid value" not in res.output, res.output  # parsed; fails on the repo
    for cmd in (["status", "--wait"], ["request", "x"]):
        bad = run(env, *cmd, "--timeout", "soon")
        assert bad.exit_code == 2
        assert "--timeout" in bad.output and "'soon' is not a duration" in bad.output


def test_host_heartbeat_takes_a_duration() -> None:
    option = next(p for p in host_main.params if p.name == "heartbeat")
    ctx = host_main.make_context("lattice-host", ["--help"], resilient_parsing=True)
    assert option.type.convert("500ms", option, ctx) == 0.5
    assert option.type.convert("2", option, ctx) == 2.0
    res = CliRunner().invoke(host_main, ["--heartbeat", "10ms"])
    assert res.exit_code == 2 and "too short: at least 0.05s" in res.output
    res = CliRunner().invoke(host_main, ["--heartbeat", "often"])
    assert res.exit_code == 2 and "not a duration" in res.output


def test_agent_log_level_is_checked_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "reconciler.main", "--repo", str(tmp_path),
                           "--log-level", "bogus"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "Invalid value for '--log-level': 'bogus' is not one of" in proc.stderr


@pytest.fixture
def responder(nats_server: NatsServer) -> Iterator[str]:
    """A NATS responder in a thread: ``svc.ok`` answers ``fine``, ``svc.err`` answers
    empty with a Nats-Service-Error header, as a host does for an actor not running."""
    ready, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        nc = await connect(NatsOptions(url=nats_server.url, name="responder"))

        async def ok(msg: object) -> None:
            await nc.publish(msg.reply, b"fine")  # type: ignore[attr-defined]

        async def err(msg: object) -> None:
            await nc.publish(msg.reply, b"", headers={  # type: ignore[attr-defined]
                "Nats-Service-Error": "no running instance of MB...",
                "Nats-Service-Error-Code": "503"})

        await nc.subscribe("svc.ok", cb=ok)
        await nc.subscribe("svc.err", cb=err)
        await nc.flush()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await nc.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield nats_server.url
    stop.set()
    thread.join(10)


def test_a_service_error_reply_is_printed_and_exits_1(responder: str, tmp_path: Path
                                                       ) -> None:
    env = clean_env(tmp_path) | {"LATTICECTL_NATS_URL": responder}
    good = run(env, "request", "svc.ok", "hi", "--timeout", "2s")
    assert (good.exit_code, good.stdout) == (0, "fine\n")
    bad = run(env, "request", "svc.err", "hi", "--timeout", "2s")
    assert bad.exit_code == 1
    assert bad.stdout == ""
    assert bad.stderr.strip() == "error: svc.err: no running instance of MB... (code 503)"


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()",
                             "vinculum-test-child"], stdin=subprocess.PIPE)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_down_signals_only_the_process_it_recorded(child: subprocess.Popen[bytes]) -> None:
    rec = ProcRecord("host", child.pid, "vinculum-test-child")
    assert rec.started == pytest.approx(psutil.Process(child.pid).create_time())
    assert is_ours(rec)
    # the same pid, but another process: created at another time, or another command
    reused = ProcRecord("host", child.pid, "vinculum-test-child", started=rec.started - 60)
    other = ProcRecord("host", child.pid, "hostagent.main", started=rec.started)
    assert not is_ours(reused) and not is_ours(other)
    assert stop_records([reused, other], timeout=1) == []
    assert child.poll() is None
    # a state file written before create times were kept: the command line decides
    legacy = ProcRecord("host", child.pid, "vinculum-test-child", started=0.0)
    assert stop_records([legacy], timeout=5) == [legacy]
    assert child.wait(5) is not None
    assert not is_ours(rec)


def test_the_repository_outlives_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    monkeypatch.setenv("LATTICECTL_CONFIG", str(tmp_path / "none.yaml"))
    state_dir, repo = tmp_path / "state", tmp_path / "gitops"
    state_dir.mkdir()
    repo.mkdir()
    (state_dir / "last.json").write_text(json.dumps({"repo": str(repo), "lattice": "x"}))
    found = Settings.resolve(repo=None, lattice=None, context=None,
                             state_dir=str(state_dir), debug=False)
    assert found.repo == str(repo)
    assert Settings.resolve(repo="/elsewhere", lattice=None, context=None,
                            state_dir=str(state_dir), debug=False).repo == "/elsewhere"
    repo.rmdir()  # gone: not a fallback any more
    assert Settings.resolve(repo=None, lattice=None, context=None,
                            state_dir=str(state_dir), debug=False).repo is None
