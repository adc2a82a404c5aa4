"""A whole lattice on one machine: nats-server, N hosts and the agent, as child processes.

Secure by default: nats-server runs in operator (JWT) mode with the keys of
:class:`lattice.auth.store.AuthStore` under the state dir, and every process connects with
credentials of its role (``creds/host-<i>.creds``, ``agent.creds``, ``apps.creds`` for the
hosts' application traffic, ``admin.creds`` for latticectl), each allowed only what its
role needs (lattice.auth.roles). ``secure=False`` (``up --insecure``) runs an open server.

Between nats-server and the hosts, the example actors (examples/actors/*.wat) are compiled,
signed with the demo seeds and pushed to the registry (:mod:`cli.examples`), and a lattice
without a trust policy gets one trusting the demo account that signed them
(:func:`cli.gantry_cmd.trust_by_default`).

Used by ``latticectl up`` (foreground or ``--detach``) and ``latticectl down``. Every
process is started here and ended here by its pid; the pids, the NATS URL and the repo are
recorded in ``<state-dir>/state.json`` so later ``latticectl`` calls find the lattice.
Before signalling a recorded pid, :func:`is_ours` checks that the process still runs the
command we started (a pid may have been reused since).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import git

from cli.examples import EXAMPLE_ACTORS, host_runtime_args, push_examples
from cli.gantry_cmd import trust_by_default
from lattice.auth.roles import RoleName
from lattice.auth.store import AuthStore
from lattice.localnats import NatsServer
from lattice.natsutil import NatsOptions

log = logging.getLogger(__name__)

EXAMPLES_REPO = Path(__file__).resolve().parent.parent / "examples" / "repo"


@dataclass
class ProcRecord:
    role: str
    pid: int
    marker: str  # a string its command line contains (pid-reuse check)
    log: str = ""


@dataclass
class StackState:
    nats_url: str
    lattice: str
    repo: str
    state_dir: str
    procs: list[ProcRecord] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    actors: dict[str, str] = field(default_factory=dict)  #: example actor name -> id
    secure: bool = False
    creds: dict[str, str] = field(default_factory=dict)  #: user name -> .creds path

    def save(self) -> None:
        path = Path(self.state_dir) / "state.json"
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> StackState | None:
        path = state_dir / "state.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        data["procs"] = [ProcRecord(**p) for p in data.get("procs", [])]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def nats(self, user: str = "admin") -> NatsOptions:
        """How ``user`` (admin by default) reaches this lattice's NATS."""
        return NatsOptions(url=self.nats_url, name=f"latticectl {user}",
                           creds_file=self.creds.get(user))


def parse_host_labels(specs: tuple[str, ...], hosts: int) -> dict[int, dict[str, str]]:
    """``("0:leds=12", "1:zone=eu")`` → ``{0: {"leds": "12"}, 1: {"zone": "eu"}}``."""
    out: dict[int, dict[str, str]] = {i: {} for i in range(hosts)}
    for spec in specs:
        idx, sep, kv = spec.partition(":")
        key, eq, value = kv.partition("=")
        if not sep or not eq or not idx.isdigit() or not key:
            raise ValueError(f"--host-label {spec!r}: expected INDEX:key=value, e.g. 0:leds=12")
        i = int(idx)
        if i >= hosts:
            raise ValueError(f"--host-label {spec!r}: host {i} does not exist (--hosts {hosts})")
        out[i][key] = value
    return out


def seed_repo(target: Path, source: Path = EXAMPLES_REPO) -> Path:
    """Make ``target`` a git repository holding the example manifests (once)."""
    if (target / ".git").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target, dirs_exist_ok=True)
    repo = git.Repo.init(target, initial_branch="main")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "latticectl")
        cw.set_value("user", "email", "latticectl@localhost")
    repo.git.add(A=True)
    repo.index.commit("Seed the lattice repository from vinculum's examples")
    return target


def is_ours(rec: ProcRecord) -> bool:
    try:
        cmdline = Path(f"/proc/{rec.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return rec.marker in cmdline


def _spawn(args: list[str], log_path: Path, *, detach: bool) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as logf:
        return subprocess.Popen(
            args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=detach,
        )


class LocalStack:
    """Starts and stops the processes of a local lattice."""

    def __init__(
        self,
        *,
        state_dir: Path,
        lattice: str,
        hosts: int,
        host_labels: dict[int, dict[str, str]],
        repo: str | None,
        heartbeat: float = 2.0,
        with_agent: bool = True,
        resync: float = 30.0,
        actors_dir: Path | None = EXAMPLE_ACTORS,
        secure: bool = True,
        agent_args: tuple[str, ...] = (),
        listen: str = "127.0.0.1",
    ) -> None:
        self.state_dir = state_dir
        self.lattice = lattice
        self.hosts = hosts
        self.host_labels = host_labels
        self.repo = repo
        self.heartbeat = heartbeat
        self.with_agent = with_agent
        self.resync = resync
        self.actors_dir = actors_dir
        self.secure = secure
        self.agent_args = agent_args
        self.listen = listen
        self.creds: dict[str, str] = {}
        self.nats: NatsServer | None = None
        self.children: list[tuple[ProcRecord, subprocess.Popen[bytes] | None]] = []

    def start(self, *, detach: bool) -> StackState:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        logs = self.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        repo = self.repo or str(seed_repo(self.state_dir / "repo"))
        self.nats = NatsServer(data_dir=self.state_dir / "nats", log_file=logs / "nats.log",
                               host=self.listen, extra_args=self._secure_setup())
        self.nats.start(detach=detach)
        assert self.nats.proc is not None
        self.children.append(
            (ProcRecord("nats-server", self.nats.proc.pid, "nats-server", str(logs / "nats.log")),
             self.nats.proc)
        )
        actors: dict[str, str] = {}
        if self.actors_dir is not None:
            try:
                pushed = push_examples(self._options("admin"), self.lattice, self.actors_dir)
                if pushed:  # the lattice trusts what up signs, unless it has a policy
                    trust_by_default(self._options("admin"), self.lattice,
                                     {a.claims.issuer for a in pushed})
            except BaseException:
                self.stop()
                raise
            actors = {a.name: a.claims.subject for a in pushed}
        runtime = host_runtime_args()
        for i in range(self.hosts):
            name = f"host-{i}"
            args = [sys.executable, "-m", "hostagent.main", "--nats-url", self.nats.url,
                    "--lattice", self.lattice, "--name", name,
                    "--heartbeat", str(self.heartbeat), *runtime,
                    "--cache-dir", str(self.state_dir / "wasm-cache")]
            for k, v in sorted(self.host_labels.get(i, {}).items()):
                args += ["--label", f"{k}={v}"]
            if self.secure:
                args += ["--creds", self.creds[name], "--apps-creds", self.creds["apps"]]
            path = logs / f"{name}.log"
            proc = _spawn(args, path, detach=detach)
            self.children.append((ProcRecord("host", proc.pid, "hostagent.main", str(path)), proc))
        if self.with_agent:
            args = [sys.executable, "-m", "reconciler.main", "--repo", repo,
                    "--nats-url", self.nats.url, "--lattice", self.lattice,
                    "--data-dir", str(self.state_dir / "agent"),
                    "--resync", str(self.resync), *self.agent_args]
            if self.secure:
                args += ["--creds", self.creds["agent"]]
            path = logs / "agent.log"
            proc = _spawn(args, path, detach=detach)
            rec = ProcRecord("agent", proc.pid, "reconciler.main", str(path))
            self.children.append((rec, proc))
        state = StackState(
            nats_url=self.nats.url, lattice=self.lattice, repo=repo,
            state_dir=str(self.state_dir), procs=[rec for rec, _ in self.children],
            actors=actors, secure=self.secure, creds=dict(self.creds),
        )
        state.save()
        return state

    def _secure_setup(self) -> list[str]:
        """In secure mode: the keys (made once, kept), fresh credentials for every process
        of this run, and the server's configuration; the arguments that load it."""
        if not self.secure:
            return []
        store = AuthStore(self.state_dir, self.lattice).initialise()
        users: list[tuple[RoleName, str]] = [("admin", "admin"), ("agent", "agent"),
                                        ("apps", "apps")]
        users += [("host", f"host-{i}") for i in range(self.hosts)]
        for role, name in users:
            issued = store.issue(role, name)
            self.creds[name] = str(issued.path)
        conf = self.state_dir / "nats" / "server.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(store.server_config(self.state_dir / "nats" / "jwt"))
        return ["-c", str(conf)]

    def _options(self, user: str) -> NatsOptions:
        assert self.nats is not None
        return NatsOptions(url=self.nats.url, name=f"latticectl {user}",
                           creds_file=self.creds.get(user))

    def stop(self, *, timeout: float = 8.0) -> None:
        """Stop the agent, then the hosts, then NATS (reverse start order)."""
        stop_records([rec for rec, _ in self.children], timeout=timeout)
        for _, proc in self.children:
            if proc is not None:
                try:
                    proc.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    pass
        self.children.clear()
        if self.nats is not None:
            self.nats.proc = None  # already stopped by pid above
        (self.state_dir / "state.json").unlink(missing_ok=True)


def stop_records(records: list[ProcRecord], *, timeout: float = 8.0) -> list[ProcRecord]:
    """SIGTERM each recorded process that is still ours (reverse order), wait, then
    SIGKILL what is left. Returns the records that were running."""
    running = [r for r in reversed(records) if is_ours(r)]
    for group in (
        [r for r in running if r.role == "agent"],
        [r for r in running if r.role == "host"],
        [r for r in running if r.role not in ("agent", "host")],
    ):
        for rec in group:
            try:
                os.kill(rec.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + timeout
        for rec in group:
            while _alive(rec.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(rec.pid) and is_ours(rec):
                os.kill(rec.pid, signal.SIGKILL)
    return running


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (OSError, IndexError):
        return True
    return state != "Z"
