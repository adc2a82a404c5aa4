"""Spawn real ``vinculum`` agent processes for end-to-end tests, cleaned up by pid.

Output goes to a log file (no pipes that can fill up). :func:`stop_all` runs at exit for
anything a test left running.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

_RUNNING: dict[int, AgentProcess] = {}


class AgentProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def commands_sent(self) -> int:
        """How many commands this agent issued (it logs one line per acked command)."""
        return sum(1 for line in self.log().splitlines() if " on host " in line
                   and ("done" in line or "no change" in line))

    def holder(self) -> str | None:
        """The lease holder name this agent campaigns as (from its start-up line)."""
        found = re.search(r"agent up: .* holder=(\S+)", self.log())
        return found.group(1) if found else None

    def first_line(self, needle: str) -> int | None:
        """Index of the first log line containing ``needle``, or None."""
        return next((i for i, line in enumerate(self.log().splitlines()) if needle in line),
                    None)

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait(timeout=10)
        _RUNNING.pop(self.pid, None)
        return code

    def stop(self, timeout: float = 10.0, *, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` (SIGTERM or SIGINT: a graceful stop); SIGKILL after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=timeout)
        _RUNNING.pop(self.pid, None)
        return code


def spawn_agent(
    *,
    repo: str | Path,
    nats_url: str,
    lattice: str,
    data_dir: Path,
    resync: float = 1.0,
    lease_ttl: float = 2.0,
    interval: float = 30.0,
    extra_args: list[str] | None = None,
) -> AgentProcess:
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"agent-{time.monotonic_ns()}.log"
    args = [sys.executable, "-m", "reconciler.main", "--repo", str(repo),
            "--nats-url", nats_url, "--lattice", lattice, "--data-dir", str(data_dir),
            "--resync", str(resync), "--lease-ttl", str(lease_ttl),
            "--interval", str(interval), "--log-level", "INFO", *(extra_args or [])]
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    agent = AgentProcess(proc, log_path)
    _RUNNING[proc.pid] = agent
    return agent


def stop_all() -> None:
    for agent in list(_RUNNING.values()):
        try:
            agent.stop(5)
        except (OSError, subprocess.SubprocessError):
            pass


atexit.register(stop_all)
