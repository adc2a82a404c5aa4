"""The real things the browser tests (and scripts/screenshots.py) look at: a lattice of
``latticectl up --detach`` and the ``latticectl dashboard`` process serving it.

Both are started as real processes, in a clean environment (no config file, no caller's
NATS URL or repository, the HOME and git configuration the caller gives), and stopped by
what started them: the lattice by ``latticectl down`` (which signals only the pids ``up``
recorded), the dashboard by SIGINT to the pid of the process started here.

:class:`RefWatch` records when a git ref moves (the status branch): a thread stats the
loose ref file every few milliseconds and keeps, for each new value, the file's mtime, i.e.
when git wrote it, not when it was looked at.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from tests.cliutil import clean_env

#: ``up``'s labels for the browser tests: host-0 runs the LED controller (leds=12), and the
#: picture groups the hosts by zone: host-0 and host-1 in zone a, host-2 in zone b.
HOST_LABELS = ("0:leds=12", "0:zone=a", "1:zone=a", "2:zone=b")
STATUS_REF = "refs/heads/lattice/status"


def ctl_argv(*args: str) -> list[str]:
    """``latticectl ARGS`` as a command line of this interpreter."""
    return [sys.executable, "-c", "from cli.main import main; main()", *args]


def process_env(tmp: Path, home: Path | None = None) -> dict[str, str]:
    """The environment of every process started here: the caller's (PATH, the venv),
    without anything that would make latticectl find another lattice, with an empty HOME
    and no global or system git configuration."""
    home = home or tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "XDG_CONFIG_HOME"}
    return {**env, **clean_env(tmp), "HOME": str(home), "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_CONFIG_NOSYSTEM": "1", "PYTHONUNBUFFERED": "1"}


@dataclass
class Lattice:
    """A lattice of ``latticectl --state-dir STATE up --detach``."""

    state_dir: Path
    env: dict[str, str]
    repo: Path
    lattice: str

    def ctl(self, *args: str, stdin: str | None = None, timeout: float = 120.0
            ) -> subprocess.CompletedProcess[str]:
        """``latticectl --state-dir STATE ARGS`` to its end (bounded by ``timeout``)."""
        return subprocess.run(ctl_argv("--state-dir", str(self.state_dir), *args),
                              input=stdin, capture_output=True, text=True, env=self.env,
                              timeout=timeout, check=False)

    def host_pid(self, name: str) -> int:
        """The pid of the host process ``up`` started as ``name`` (its log is NAME.log),
        checked to still be that process."""
        state = json.loads((self.state_dir / "state.json").read_text())
        for proc in state["procs"]:
            if proc["role"] == "host" and Path(proc.get("log", "")).name == f"{name}.log":
                cmd = psutil.Process(proc["pid"]).cmdline()
                assert "hostagent.main" in " ".join(cmd) and name in cmd, cmd
                return int(proc["pid"])
        raise LookupError(f"no host {name} in {self.state_dir / 'state.json'}")

    def head(self) -> str:
        return git_out(self.repo, "rev-parse", "HEAD")

    def down(self) -> None:
        res = self.ctl("down", timeout=60.0)
        assert res.returncode == 0, res.stdout + res.stderr


def start_lattice(tmp: Path, *, lattice: str = "dash", hosts: int = 3,
                  labels: tuple[str, ...] = HOST_LABELS, heartbeat: str = "500ms",
                  timeout: float = 180.0) -> Lattice:
    """``up --detach`` on a copy of examples/repo made under ``tmp/state`` by ``up``."""
    state_dir = tmp / "state"
    env = process_env(tmp)
    label_args = [a for spec in labels for a in ("--host-label", spec)]
    res = subprocess.run(
        ctl_argv("--state-dir", str(state_dir), "--lattice", lattice, "up", "--detach",
                 "--hosts", str(hosts), "--heartbeat", heartbeat, *label_args),
        capture_output=True, text=True, env=env, timeout=timeout, check=False)
    state_file = state_dir / "state.json"
    if res.returncode != 0:
        if state_file.exists():  # what up started and recorded is stopped again
            subprocess.run(ctl_argv("--state-dir", str(state_dir), "down"), env=env,
                           capture_output=True, timeout=60, check=False)
        raise RuntimeError(f"latticectl up failed ({res.returncode}):\n{res.stdout}\n"
                           f"{res.stderr}")
    state = json.loads(state_file.read_text())
    return Lattice(state_dir, env, Path(state["repo"]), lattice)


@dataclass
class Dashboard:
    """A ``latticectl dashboard`` process, its URL from the first line it printed."""

    proc: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:PORT/ (with the slash)
    log: Path

    @property
    def origin(self) -> str:
        return self.url.rstrip("/")

    def stop(self, timeout: float = 15.0) -> int:
        """Ctrl-C (SIGINT to the pid started here), then its exit status; SIGKILL if it
        does not end within ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            raise


PREFIX = "Dashboard: "


def start_dashboard(global_args: list[str], env: dict[str, str], log_dir: Path, *,
                    extra: tuple[str, ...] = (), timeout: float = 60.0) -> Dashboard:
    """``latticectl GLOBAL_ARGS dashboard --no-browser --addr 127.0.0.1:0 EXTRA``; returns
    once its first stdout line (``Dashboard: URL``) was printed, or raises with its
    output when it exits or ``timeout`` passes first."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out, err = log_dir / "dashboard.out", log_dir / "dashboard.err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(
            ctl_argv(*global_args, "dashboard", "--no-browser", "--addr", "127.0.0.1:0",
                     *extra),
            stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout
    while True:
        first = out.read_bytes().split(b"\n", 1)
        if len(first) == 2:  # a whole first line
            line = first[0].decode(errors="replace")
            if not line.startswith(PREFIX) or not line.endswith("/"):
                Dashboard(proc, "", err).stop()
                raise RuntimeError(f"dashboard's first line is not 'Dashboard: URL/': "
                                   f"{line!r}")
            return Dashboard(proc, line.removeprefix(PREFIX), err)
        if proc.poll() is not None or time.monotonic() > deadline:
            code = proc.poll()
            if code is None:
                Dashboard(proc, "", err).stop()
            raise RuntimeError(f"dashboard printed no URL (exit {code}): "
                               f"{out.read_text(errors='replace')}\n"
                               f"{err.read_text(errors='replace')}")
        time.sleep(0.02)  # a poll interval of the deadline loop above


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def status_phase(repo: Path, sha: str, kind: str, name: str) -> str | None:
    """The phase of ``kind/name`` (deployments, bindingsets) in status commit ``sha``."""
    res = subprocess.run(["git", "-C", str(repo), "show", f"{sha}:{kind}/{name}.yaml"],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return None
    data = yaml.safe_load(res.stdout)
    return str(data.get("phase")) if isinstance(data, dict) else None


@dataclass
class RefWatch:
    """Every value a ref takes while watched, with when git wrote it (epoch seconds)."""

    repo: Path
    ref: str = STATUS_REF
    interval: float = 0.005
    seen: list[tuple[str, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _path(self) -> Path:
        return self.repo / ".git" / self.ref

    def _read(self) -> tuple[str, float] | None:
        try:
            path = self._path()
            st = path.stat()
            return path.read_text().strip(), st.st_mtime_ns / 1e9
        except (FileNotFoundError, NotADirectoryError):  # packed, or mid-rename
            try:
                return git_out(self.repo, "rev-parse", self.ref), time.time()
            except subprocess.CalledProcessError:
                return None

    def _run(self) -> None:
        last = self._read()
        while not self._stop.wait(self.interval):
            now = self._read()
            if now is not None and (last is None or now[0] != last[0]):
                self.seen.append(now)
                last = now

    def __enter__(self) -> RefWatch:
        self._thread = threading.Thread(target=self._run, name="refwatch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
