"""Helpers of the engine-fault tests (issue 15 §3): a lattice on a NATS cluster, the
agents' leadership read from their logs, replica census, and network namespaces.

Neighbours: :mod:`lattice.localcluster` (loopback clusters), :mod:`tests.agentproc` and
:mod:`tests.hostproc` (real agent and host processes), :mod:`tests.lattice_e2e`
(:class:`EventLog`). Used by ``tests/test_cluster_faults.py`` and
``tests/test_partition.py``.

Network namespaces: :class:`NetnsPair` makes two namespaces joined by one veth pair
(``10.213.0.1/24`` and ``10.213.0.2/24``, loopback up in both), cut by bringing one end
down and healed by bringing it up; everything it made goes when it is closed (deleting a
namespace deletes the veth end in it, and so the pair). Processes run inside with ``ip
netns exec`` (which execs: the Popen's pid is the program's own). The test process itself
reaches a namespace through :class:`NetnsLoop`, a thread that joined the namespace
(``setns(2)`` is per thread for network namespaces) and runs an asyncio loop there: every
socket it opens, NATS connections and HTTP requests to the monitoring port alike, is in
that namespace.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client

from lattice.localcluster import monitor_json
from lattice.localnats import find_nats_server
from lattice.natsutil import scatter_gather
from lattice.protocol import HostInventory, PingRequest, Subjects, encode
from lattice.protocol.models import ANN_MANAGED_BY, ANN_NAME, ANN_REPLICA
from tests.agentproc import AgentProcess
from tests.hostproc import HostProcess, host_command

T = TypeVar("T")

# ---------------------------------------------------------------- inventories and census


async def inventories(nc: Client, lattice: str, n: int,
                      timeout: float = 0.5) -> dict[str, HostInventory]:
    """Inventories of the hosts answering a ping (at most ``n``), by host id."""
    msgs = await scatter_gather(nc, Subjects(lattice).ping, encode(PingRequest()),
                                timeout=timeout, max_replies=n)
    invs = [HostInventory.model_validate_json(m.data) for m in msgs]
    return {i.host_id: i for i in invs}


Slot = tuple[str, str]  #: (actor id, replica), one replica of one deployment


def census(invs: Mapping[str, HostInventory], deployment: str) -> dict[Slot, list[str]]:
    """Instance ids serving each replica of ``deployment`` (owned instances only). Pure."""
    out: dict[Slot, list[str]] = {}
    for inv in invs.values():
        for a in inv.actors:
            ann = a.annotations
            if ann.get(ANN_MANAGED_BY) and ann.get(ANN_NAME) == deployment:
                out.setdefault((a.actor_id, str(ann.get(ANN_REPLICA))), []).append(
                    a.instance_id)
    return out


def exact(slots: Mapping[Slot, list[str]], want: Mapping[str, int]) -> str | None:
    """What keeps ``slots`` from being exactly ``want`` (actor id -> replicas, each served
    by exactly one instance), or None. Pure."""
    for actor, n in want.items():
        for r in range(n):
            got = slots.get((actor, str(r)), [])
            if len(got) != 1:
                return f"{actor[:8]} replica {r}: {len(got)} instances"
    extra = [s for s in slots if s[0] not in want or int(s[1]) >= want[s[0]]]
    return f"unexpected replicas {extra}" if extra else None


def instances_of(invs: Mapping[str, HostInventory]) -> dict[str, str]:
    """instance id -> host id of every actor instance. Pure."""
    return {a.instance_id: hid for hid, inv in invs.items() for a in inv.actors}


# ---------------------------------------------------------------- leadership, from the logs

_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
_LEASE = re.compile(_STAMP + r" \S+ \S+: lease (acquired|lost|released) by (\S+)")
_COMMAND = re.compile(_STAMP + r" \S+ \S+: .* on host \S+: (?:done|no change)")
_STATUS = re.compile(_STAMP + r" \S+ \S+: .*status branch: ([0-9a-f]{12})")


def _when(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f")


@dataclass
class Leadership:
    """What one agent's log says of its leadership: the intervals it believed it held the
    lease (from ``lease acquired`` to ``lease lost``/``released``, open at the end), and
    when it issued commands and status commits."""

    name: str
    intervals: list[tuple[datetime, datetime]] = field(default_factory=list)
    commands: list[datetime] = field(default_factory=list)
    status_commits: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def read(cls, name: str, text: str, *, now: datetime | None = None) -> Leadership:
        """Parse an agent's log. Pure but for ``now`` (the end of an open interval)."""
        end_of_log = now or datetime.now()
        out = cls(name)
        since: datetime | None = None
        for line in text.splitlines():
            if m := _LEASE.match(line):
                at = _when(m.group(1))
                if m.group(2) == "acquired":
                    since = since or at
                elif since is not None:
                    out.intervals.append((since, at))
                    since = None
            elif m := _COMMAND.match(line):
                out.commands.append(_when(m.group(1)))
            elif m := _STATUS.match(line):
                out.status_commits[m.group(2)] = _when(m.group(1))
        if since is not None:
            out.intervals.append((since, end_of_log))
            out.leads = True
        return out

    #: whether the log's last word on the lease is ``acquired`` (the last interval is
    #: open: it ends at the ``now`` the log was read)
    leads: bool = False

    def leading_at(self, t: datetime) -> bool:
        return any(a <= t <= b for a, b in self.intervals) or (
            self.leads and bool(self.intervals) and t >= self.intervals[-1][0])

    def spans(self) -> list[tuple[str, str]]:
        """The intervals as printable times (the open one ends in ``...``)."""
        out = [(str(a.time()), str(b.time())) for a, b in self.intervals]
        if self.leads and out:
            out[-1] = (out[-1][0], "...")
        return out


def leadership_problems(views: Iterable[Leadership]) -> list[str]:
    """Everything that says two agents led at once: overlapping intervals, or a command
    acked / status commit written by one agent while another led. Pure; empty when all
    is well. (The log has the time a command's ack came, not when it was sent: a pass
    begun as leader may log acks after its lease lapsed; :func:`late_acks` counts those,
    which are no second leader as long as no other agent led then.)"""
    views = list(views)
    problems: list[str] = []
    for i, a in enumerate(views):
        for b in views[i + 1:]:
            for a0, a1 in a.intervals:
                for b0, b1 in b.intervals:
                    if a0 < b1 and b0 < a1:
                        problems.append(f"{a.name} [{a0.time()}, {a1.time()}] overlaps "
                                        f"{b.name} [{b0.time()}, {b1.time()}]")
        others = [v for v in views if v is not a]

        def usurped(t: datetime, a: Leadership = a, others: list[Leadership] = others) -> bool:
            return not a.leading_at(t) and any(o.leading_at(t) for o in others)

        problems += [f"{a.name} had a command acked at {t.time()} while another led"
                     for t in a.commands if usurped(t)]
        problems += [f"{a.name} wrote status {c} at {t.time()} while another led"
                     for c, t in a.status_commits.items() if usurped(t)]
    return problems


def late_acks(views: Iterable[Leadership]) -> dict[str, int]:
    """Per agent, the commands whose ack it logged while its own log says it did not
    lead (sent in a pass begun as leader). Pure."""
    return {v.name: sum(not v.leading_at(t) for t in v.commands) for v in views}


_HOST_ACTOR = re.compile(_STAMP + r" \S+ hostagent\.commands: .* actor \S+ instance (\S+) "
                         r"(started|stopped)")


@dataclass
class Ledger:
    """Every actor start and stop the hosts logged (their own record: unlike events, it
    loses nothing when a server dies under a host)."""

    started: dict[str, datetime] = field(default_factory=dict)
    stopped: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def read(cls, logs: Iterable[str]) -> Ledger:
        """Parse hosts' logs. Pure."""
        out = cls()
        for text in logs:
            for line in text.splitlines():
                if m := _HOST_ACTOR.match(line):
                    book = out.started if m.group(3) == "started" else out.stopped
                    book[m.group(2)] = _when(m.group(1))
        return out

    def started_since(self, t: datetime) -> list[str]:
        return [i for i, at in self.started.items() if at >= t]


def leadership(agents: Mapping[str, AgentProcess]) -> list[Leadership]:
    now = datetime.now()
    return [Leadership.read(name, a.log(), now=now) for name, a in agents.items()]


# ---------------------------------------------------------------- a lattice on a cluster


def rotated(urls: list[str], i: int) -> str:
    """``urls`` starting at ``i mod len``, comma-joined: a client that prefers server i
    and knows every other one (clients do not randomise the list). Pure."""
    k = i % len(urls)
    return ",".join(urls[k:] + urls[:k])


def server_of(monitor_urls: list[str], conn_name: str) -> list[int]:
    """Indexes of the servers (by monitoring URL) holding a client named ``conn_name``."""
    out = []
    for i, url in enumerate(monitor_urls):
        connz = monitor_json(url, "/connz?limit=1024") or {}
        if any(c.get("name") == conn_name for c in connz.get("connections") or []):
            out.append(i)
    return out


# ---------------------------------------------------------------- network namespaces

CLONE_NEWNET = 0x40000000


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=check)


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None if they can (one is made and
    deleted to find out)."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    probe = f"vprobe{os.getpid()}"
    try:
        made = _ip("netns", "add", probe, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip` cannot run: {exc}"
    if made.returncode != 0:
        return f"`ip netns add` failed (needs CAP_SYS_ADMIN/root): {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class NetnsPair:
    """Two network namespaces joined by a veth pair; ``with`` deletes both.

    Side ``a`` has ``10.213.0.1``, side ``b`` ``10.213.0.2`` (a /24 of their own: the
    addresses exist only inside these namespaces). :meth:`cut` brings a's end down (b's
    loses its carrier: nothing passes either way); :meth:`heal` brings it up again.
    """

    ADDR = ("10.213.0.1", "10.213.0.2")

    def __init__(self, tag: str) -> None:
        base = f"v{os.getpid()}{tag}"[:12]
        self.names = (f"{base}a", f"{base}b")
        self.ifaces = (f"{base}a", f"{base}b")  # interface names stay under 16 bytes
        self.made: list[str] = []

    @property
    def a(self) -> str:
        return self.names[0]

    @property
    def b(self) -> str:
        return self.names[1]

    def create(self) -> NetnsPair:
        try:
            for ns in self.names:
                _ip("netns", "add", ns)
                self.made.append(ns)
                _ip("link", "set", "lo", "up", ns=ns)
            ia, ib = self.ifaces
            _ip("link", "add", ia, "netns", self.a, "type", "veth", "peer", "name", ib,
                "netns", self.b)
            for ns, iface, addr in zip(self.names, self.ifaces, self.ADDR, strict=True):
                _ip("addr", "add", f"{addr}/24", "dev", iface, ns=ns)
                _ip("link", "set", iface, "up", ns=ns)
        except BaseException:
            self.delete()
            raise
        return self

    def cut(self) -> None:
        _ip("link", "set", self.ifaces[0], "down", ns=self.a)

    def heal(self) -> None:
        _ip("link", "set", self.ifaces[0], "up", ns=self.a)

    def delete(self) -> None:
        """Delete the namespaces made (and with them the veth pair)."""
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made.clear()

    def exists(self) -> list[str]:
        listed = _ip("netns", "list", check=False).stdout.split()
        return [ns for ns in self.names if ns in listed]

    def __enter__(self) -> NetnsPair:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.delete()


def _join_netns(ns: str) -> None:
    """Move the calling thread into network namespace ``ns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsLoop:
    """An asyncio loop on a thread of its own inside network namespace ``ns``.

    >>> with NetnsLoop("v1a") as side:                        # doctest: +SKIP
    ...     invs = await side.run(lambda: inventories(...))
    """

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.loop = asyncio.new_event_loop()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name=f"netns-{ns}", daemon=True)

    def _main(self) -> None:
        try:
            _join_netns(self.ns)
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        asyncio.set_event_loop(self.loop)
        self._ready.set_result(None)
        self.loop.run_forever()
        self.loop.close()

    def start(self) -> NetnsLoop:
        self._thread.start()
        self._ready.result(timeout=10)
        return self

    async def run(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run the coroutine ``fn()`` on this loop (in the namespace); its result."""
        fut = asyncio.run_coroutine_threadsafe(fn(), self.loop)
        return await asyncio.wrap_future(fut)

    def call(self, fn: Callable[[], T]) -> Awaitable[T]:
        """Run blocking ``fn`` on this loop's thread (in the namespace)."""
        async def wrapped() -> T:
            return fn()
        return self.run(wrapped)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> NetnsLoop:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- processes in a namespace


@dataclass
class NsServer:
    """One nats-server inside a namespace: clients on ``0.0.0.0:port`` (so loopback works
    inside it), routes/leafnodes on the addresses the config says."""

    name: str
    ns: str
    port: int
    data_dir: Path
    config: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nats-server.log"

    @property
    def url(self) -> str:
        """The client URL from inside the namespace."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 20.0) -> NsServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats-server.conf"
        conf.write_text(self.config)
        with open(self.log_file, "ab") as logf:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, find_nats_server(), "-c", str(conf)],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while "Server is ready" not in self.log_file.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.stop()
                raise RuntimeError(f"nats-server {self.name} in {self.ns} not ready "
                                   f"(exit {code}); see {self.log_file}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def server_config(name: str, *, port: int, monitor: int, cluster: str | None = None,
                  routes: Iterable[str] = (), jetstream: bool = True,
                  js_domain: str | None = None, leaf_listen: str | None = None,
                  leaf_remotes: Iterable[str] = (), store: Path) -> str:
    """A nats-server configuration: fast pings (a cut link is found in ~3 s), the given
    cluster listen/routes, leafnode listener or remotes. Pure."""
    lines = [f"server_name: {name}", f"listen: 0.0.0.0:{port}",
             f"http: 0.0.0.0:{monitor}", 'ping_interval: "1s"', "ping_max: 2"]
    if jetstream:
        dom = f", domain: {js_domain}" if js_domain else ""
        lines.append(f'jetstream {{ store_dir: "{store}"{dom} }}')
    if cluster:
        rts = ", ".join(f'"nats-route://{r}"' for r in routes)
        lines.append(f"cluster {{ name: vinculum, listen: {cluster}, no_advertise: true, "
                     f"routes: [{rts}] }}")
    if leaf_listen:
        lines.append(f"leafnodes {{ listen: {leaf_listen} }}")
    urls = ", ".join(f'"nats-leaf://{r}"' for r in leaf_remotes)
    if urls:  # one remote listing every hub server: one link, moved when its server dies
        lines.append(f"leafnodes {{ reconnect: 1, remotes: [{{ urls: [{urls}] }}] }}")
    return "\n".join(lines) + "\n"


def spawn_host_in(ns: str, url: str, lattice: str, *, name: str, log_dir: Path,
                  labels: Mapping[str, str] | None = None, heartbeat: float = 0.5,
                  extra: Iterable[str] = ()) -> HostProcess:
    """A ``lattice-host --runtime memory`` inside namespace ``ns``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    args = ["ip", "netns", "exec", ns, *host_command(), "--nats-url", url, "--lattice",
            lattice, "--name", name, "--heartbeat", str(heartbeat), "--log-level", "debug",
            "--runtime", "memory", *extra]
    for k, v in sorted((labels or {}).items()):
        args += ["--label", f"{k}={v}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "LATTICE_CACHE_DIR": str(log_dir / "wasm-cache")}
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    return HostProcess(proc, log_path, name)


def spawn_agent_in(ns: str, *, repo: str, url: str, lattice: str, data_dir: Path,
                   extra: Iterable[str] = ()) -> AgentProcess:
    """A ``vinculum`` agent inside namespace ``ns`` with the default resync (30 s) and
    lease TTL (6 s: a lease write stalled for a few seconds while JetStream settles does
    not lapse it). The resync is not what these tests rely on: heartbeats carry the
    hosts' inventories; and a resync every second hits the agent's lost wake-up
    (``tests/test_agent_wakeups.py``) within a few runs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "agent.log"
    args = ["ip", "netns", "exec", ns, sys.executable, "-m", "reconciler.main",
            "--repo", repo, "--nats-url", url, "--lattice", lattice,
            "--data-dir", str(data_dir), "--resync", "30", "--lease-ttl", "6",
            "--interval", "30", "--log-level", "INFO", *extra]
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return AgentProcess(proc, log_path)


def stop_processes(procs: Iterable[HostProcess | AgentProcess]) -> None:
    """Stop each process by its pid (SIGTERM, then SIGKILL)."""
    for p in procs:
        try:
            p.stop(5)
        except (OSError, subprocess.SubprocessError):
            pass


def wait_formed(monitors: list[str], names: list[str]) -> str | None:
    """What keeps the servers behind ``monitors`` (reachable from the calling thread)
    from being one cluster with a JetStream meta leader, or None."""
    leaders = set()
    for url, me in zip(monitors, names, strict=True):
        routez = monitor_json(url, "/routez")
        if routez is None:
            return f"{me}: no /routez"
        peers = {str(r.get("remote_name", "")) for r in routez.get("routes") or []}
        if not set(names) - {me} <= peers:
            return f"{me} routes to {sorted(peers)}"
        leader = ((monitor_json(url, "/jsz") or {}).get("meta_cluster") or {}).get("leader")
        if not leader:
            return f"{me}: no meta leader"
        leaders.add(leader)
    return None if len(leaders) == 1 else f"meta leaders {leaders}"
