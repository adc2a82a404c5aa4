"""A whole lattice on one machine: nats-server(s), N hosts and the agent, as child processes.

The servers (:mod:`cli.stack_nats`): one, or a routed cluster of ``cluster`` (each host
prefers one of them, round-robin, and is given every URL to fail over to), always with the
JetStream domain ``vinculum`` and a leafnode listener; or, with ``leaf_of``, a leaf-node
site joined to such a hub, whose hosts the hub's agent manages (no agent, no repo here).

Secure by default: nats-server runs in operator (JWT) mode with the keys of
:class:`lattice.auth.store.AuthStore` under the state dir, and every process connects with
credentials of its role (``creds/host-<i>.creds``, ``agent.creds``, ``apps.creds`` for the
hosts' application traffic, ``admin.creds`` for latticectl, ``monitor.creds`` for the
agent's advisory watcher), each allowed only what its role needs (lattice.auth.roles). A
leaf site issues its credentials from the hub's keys (``hub_state_dir``), and its server
joins the hub twice: ``leaf-link.creds`` binds the lattice's account,
``leaf-system-link.creds`` the system account (revocations pushed on the hub reach the
site; the site's connect/disconnect advisories reach the agent's monitor).
``secure=False`` (``up --insecure``) runs an open server.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import git
import psutil

from cli.examples import EXAMPLE_ACTORS, host_runtime_args, push_examples
from cli.gantry_cmd import trust_by_default
from cli.settings import CliError
from cli.stack_nats import JS_DOMAIN, Servers, start_hub, start_leaf
from lattice.auth.roles import RoleName
from lattice.auth.store import AuthStore
from lattice.localnats import free_port
from lattice.natsutil import NatsOptions, server_urls

log = logging.getLogger(__name__)

EXAMPLES_REPO = Path(__file__).resolve().parent.parent / "examples" / "repo"
MONITOR = "monitor"  #: the agent's advisory watcher's credentials (system account)
LEAF_LINK = "leaf-link"  #: the credentials a leaf site's server joins the hub with
#: the site server's second link, in the system account (lattice.auth.roles.leaf_system)
LEAF_SYSTEM_LINK = "leaf-system-link"
T = TypeVar("T")


def _retrying(action: Callable[[], T], *, timeout: float = 10.0) -> T:
    """``action()``, again while it fails for up to ``timeout`` seconds: the first writes
    to a replicated bucket just created can fail while its replicas form (~0.1 s)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except Exception as exc:  # whatever it is, the last one is raised
            if time.monotonic() >= deadline:
                raise
            log.info("retrying after %s: %s", type(exc).__name__, exc)
            time.sleep(0.1)


@dataclass
class ProcRecord:
    role: str
    pid: int
    marker: str  # a string its command line contains (pid-reuse check)
    log: str = ""
    #: the process's create time (epoch seconds, psutil's) when recorded; 0.0 in a state
    #: file written before it was kept (then only the command line is checked)
    started: float | None = None

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = _create_time(self.pid) or 0.0


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
    #: the agent's advisory watcher's system-account credentials (secure hubs)
    monitor_creds: str | None = None
    #: every nats-server: name, client_url, monitor_url, leafnode_url, pid, log, role
    servers: list[dict[str, Any]] = field(default_factory=list)
    #: where a leaf-node site joins this hub (``latticectl up --leaf-of``)
    leafnode_urls: list[str] = field(default_factory=list)
    js_domain: str | None = None
    replicas: int = 1  #: of the buckets ``up`` made
    leaf_of: str | None = None  #: the hub's leafnode URL, when this is a leaf site
    metrics_url: str | None = None  #: the agent's Prometheus endpoint (``--metrics-addr``)

    def save(self) -> None:
        path = Path(self.state_dir) / "state.json"
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> StackState | None:
        path = state_dir / "state.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        data["procs"] = [ProcRecord(**{"started": 0.0, **p}) for p in data.get("procs", [])]
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def nats(self, user: str = "admin") -> NatsOptions:
        """How ``user`` (admin by default) reaches this lattice's NATS."""
        return NatsOptions(url=self.nats_url, name=f"latticectl {user}",
                           creds_file=self.creds.get(user), js_domain=self.js_domain,
                           js_replicas=self.replicas)


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
    """True when ``rec.pid`` is still the process we started: running (not a zombie), its
    command line contains ``rec.marker`` and, when recorded, its create time is the one
    we recorded, so a pid reused since is never signalled. Works wherever psutil does
    (Linux, macOS, the BSDs), not only with a ``/proc``."""
    try:
        proc = psutil.Process(rec.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if rec.started and abs(proc.create_time() - rec.started) > CREATE_TIME_SLACK:
            return False
        return rec.marker in " ".join(proc.cmdline())
    except (psutil.Error, OSError):
        return False


#: seconds two readings of one process's create time may differ by (rounding of clock
#: ticks); a reused pid's process was created later than that
CREATE_TIME_SLACK = 0.5


def _create_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


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
        cluster: int = 1,
        leaf_of: str | None = None,
        hub_state_dir: Path | None = None,
        site: str = "edge",
        log_format: str = "text",
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
        self.cluster = cluster
        #: the hub's leafnode URL(s), comma-separated: this stack is a leaf-node site
        self.leaf_of = leaf_of
        self.hub_state_dir = hub_state_dir
        self.site = site
        self.log_format = log_format  #: the agent's and hosts' --log-format
        self.creds: dict[str, str] = {}
        self.servers: Servers | None = None
        self.children: list[tuple[ProcRecord, subprocess.Popen[bytes] | None]] = []

    def start(self, *, detach: bool) -> StackState:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        logs = self.state_dir / "logs"
        logs.mkdir(exist_ok=True)
        repo = "" if self.leaf_of else (self.repo or str(seed_repo(self.state_dir / "repo")))
        auth = self._secure_setup()
        if self.leaf_of:
            store = self._store() if self.secure else None
            self.servers = start_leaf(
                self.state_dir, hub_leafnode_urls=server_urls(self.leaf_of), site=self.site,
                auth=auth, link_creds=self.creds.get(LEAF_LINK),
                account=store.account.public_key if store else None,
                system_link_creds=self.creds.get(LEAF_SYSTEM_LINK),
                system_account=store.system_account.public_key if store else None,
                detach=detach)
        else:
            self.servers = start_hub(self.state_dir, logs, size=self.cluster,
                                     listen=self.listen, auth=auth, detach=detach)
        self.children += [(ProcRecord("nats-server", r.pid, "nats-server", r.log), None)
                          for r in self.servers.records]
        actors: dict[str, str] = {}
        if self.actors_dir is not None and not self.leaf_of:
            try:
                pushed = _retrying(lambda: push_examples(
                    self._options("admin"), self.lattice, self.actors_dir or EXAMPLE_ACTORS))
                if pushed:  # the lattice trusts what up signs, unless it has a policy
                    issuers = {a.claims.issuer for a in pushed}
                    _retrying(lambda: trust_by_default(self._options("admin"), self.lattice,
                                                       issuers))
            except BaseException:
                self.stop()
                raise
            actors = {a.name: a.claims.subject for a in pushed}
        self._start_hosts(logs, detach=detach)
        metrics = None
        if self.with_agent and not self.leaf_of:
            metrics = f"127.0.0.1:{free_port()}"  # the agent's metrics, /healthz, /readyz
            args = [sys.executable, "-m", "reconciler.main", "--repo", repo,
                    "--nats-url", self.servers.url, "--lattice", self.lattice,
                    "--js-domain", JS_DOMAIN, "--replicas", str(self.servers.replicas),
                    "--data-dir", str(self.state_dir / "agent"),
                    "--resync", str(self.resync), "--metrics-addr", metrics,
                    "--log-format", self.log_format, *self.agent_args]
            if self.secure:
                args += ["--creds", self.creds["agent"],
                         "--monitor-creds", self.creds[MONITOR]]
            path = logs / "agent.log"
            proc = _spawn(args, path, detach=detach)
            rec = ProcRecord("agent", proc.pid, "reconciler.main", str(path))
            self.children.append((rec, proc))
        state = StackState(
            nats_url=self.servers.url, lattice=self.lattice, repo=repo,
            state_dir=str(self.state_dir), procs=[rec for rec, _ in self.children],
            actors=actors, secure=self.secure,
            creds={k: v for k, v in self.creds.items()
                   if k not in (MONITOR, LEAF_LINK, LEAF_SYSTEM_LINK)},
            monitor_creds=self.creds.get(MONITOR), servers=[
                asdict(r) for r in self.servers.records],
            leafnode_urls=self.servers.leafnode_urls, js_domain=JS_DOMAIN,
            replicas=self.servers.replicas, leaf_of=self.leaf_of,
            metrics_url=f"http://{metrics}/metrics" if metrics else None,
        )
        state.save()
        return state

    def host_name(self, i: int) -> str:
        return f"{self.site}-host-{i}" if self.leaf_of else f"host-{i}"

    def _start_hosts(self, logs: Path, *, detach: bool) -> None:
        assert self.servers is not None
        runtime = host_runtime_args()
        for i in range(self.hosts):
            name = self.host_name(i)
            args = [sys.executable, "-m", "hostagent.main",
                    "--nats-url", self.servers.url_for(i), "--js-domain", JS_DOMAIN,
                    "--lattice", self.lattice, "--name", name,
                    "--heartbeat", str(self.heartbeat), "--log-format", self.log_format,
                    *runtime,
                    "--cache-dir", str(self.state_dir / "wasm-cache")]
            for k, v in sorted(self.host_labels.get(i, {}).items()):
                args += ["--label", f"{k}={v}"]
            if self.secure:
                args += ["--creds", self.creds[name], "--apps-creds", self.creds["apps"]]
            path = logs / f"{name}.log"
            proc = _spawn(args, path, detach=detach)
            self.children.append((ProcRecord("host", proc.pid, "hostagent.main", str(path)), proc))

    def _store(self) -> AuthStore:
        """The keys: this state dir's, or on a leaf site the hub's (``--hub-state-dir``)."""
        if not self.leaf_of:
            return AuthStore(self.state_dir, self.lattice).initialise()
        hub = self.hub_state_dir or self.state_dir
        store = AuthStore(hub, self.lattice)
        if not store.exists:
            raise CliError(f"no operator keys in {hub}: a secured leaf site issues its "
                           "credentials from the hub's state dir; pass --hub-state-dir (the "
                           "hub's --state-dir), or --insecure for an open hub")
        return store.initialise()

    def _secure_setup(self) -> Callable[[Path], str] | None:
        """In secure mode: the keys (made once, kept), fresh credentials for every process
        of this run (written under this state dir), and the servers' configuration as a
        function of a server's resolver dir."""
        if not self.secure:
            return None
        store = self._store()
        users: list[tuple[RoleName, str]] = [("admin", "admin"), ("apps", "apps")]
        if not self.leaf_of:
            users.append(("agent", "agent"))
        else:  # the site's links to the hub (lattice.auth.roles.leaf, .leaf_system)
            users += [("leaf", LEAF_LINK), ("leaf-system", LEAF_SYSTEM_LINK)]
        users += [("host", self.host_name(i)) for i in range(self.hosts)]
        for role, name in users:
            issued = store.issue(role, name, path=self.state_dir / "creds" / f"{name}.creds")
            self.creds[name] = str(issued.path)
        if not self.leaf_of:
            self.creds[MONITOR] = str(store.issue_monitor().path)
        return store.server_config

    def _options(self, user: str) -> NatsOptions:
        assert self.servers is not None
        return NatsOptions(url=self.servers.url, name=f"latticectl {user}",
                           creds_file=self.creds.get(user), js_domain=JS_DOMAIN,
                           js_replicas=self.servers.replicas)

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
        forget(self.state_dir, StackState.load(self.state_dir))


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
    """True while ``pid`` runs (a zombie child is reaped and counts as gone)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except (psutil.Error, OSError):
        return False


def forget(state_dir: Path, state: StackState | None) -> None:
    """Remove ``state.json`` (nothing is up any more) but keep, in ``last.json``, the
    repository and lattice id it named: the repository outlives the lattice, and
    latticectl falls back on it (:func:`cli.settings.load_last`) after ``down``."""
    if state is not None:
        (state_dir / LAST_FILE).write_text(json.dumps(
            {"repo": state.repo, "lattice": state.lattice}, indent=2))
    (state_dir / "state.json").unlink(missing_ok=True)


#: what ``down`` keeps of a stopped lattice
LAST_FILE = "last.json"
