"""A local NATS cluster on loopback: N routed nats-servers with JetStream on each.

The multi-server counterpart of :class:`lattice.localnats.NatsServer`, for
``latticectl up --cluster N`` and the tests of failures of the engine itself. Every server
is a :class:`NatsServer` (same binary, same stop-by-pid) with a generated configuration:
one cluster name, routes to all the others, its own JetStream store, an HTTP monitoring
port on loopback and, when asked, a ``leafnodes { listen }`` port for
:class:`lattice.localleaf.LeafServer`. Operator-mode auth is appended per server, so each
gets a resolver dir of its own (pass ``AuthStore.server_config``, a function of that dir).

:meth:`NatsCluster.start` returns once every server accepts clients, sees a route to every
other one and agrees on a JetStream meta leader, all bounded by a deadline.
:func:`replicas_for` is the replica count streams, KV buckets and object stores of a
lattice should be created with on a cluster of a given size.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lattice.errors import NatsServerError
from lattice.localnats import NatsServer, free_port

log = logging.getLogger(__name__)

#: Extra server configuration: the text itself, or a function of the server's own
#: directory for state (operator mode: ``AuthStore.server_config``, whose resolver dir
#: must not be shared by two servers).
ConfigText = str | Callable[[Path], str]

_START_ATTEMPTS = 3  #: a cluster whose port was taken is started on new ports


def _ephemeral_low() -> int:
    try:
        low = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]
        return int(low)
    except (OSError, ValueError, IndexError):
        return 32768


def stable_port(host: str = "127.0.0.1") -> int:
    """A free TCP port below the kernel's ephemeral range, so that no outgoing connection
    (a route, a leaf link, a client of anyone's) takes it between now and the server's
    bind, nor while a killed server is down before :meth:`NatsCluster.restart`. Falls
    back to :func:`free_port` when none is found in a bounded number of tries."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randint(10000, max(10001, low - 1))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    return free_port(host)


def replicas_for(cluster_size: int) -> int:
    """Replicas of a JetStream stream, KV bucket or object store on ``cluster_size``
    servers: three where there are three servers or more (one may fail, a majority
    stays), else one per server. Pure; ``latticectl up`` and the agent pass it on."""
    return max(1, min(3, cluster_size))


def render_config(config_text: ConfigText | None, state_dir: Path) -> str:
    """The text of ``config_text`` for a server keeping its state in ``state_dir``."""
    if config_text is None:
        return ""
    return config_text(state_dir) if callable(config_text) else config_text


def monitor_json(monitor_url: str, path: str, *, timeout: float = 1.0) -> dict[str, Any] | None:
    """One monitoring endpoint (``/routez``, ``/jsz``, ``/leafz``) as JSON, or None if
    the server does not answer (starting, killed)."""
    try:
        with urllib.request.urlopen(f"{monitor_url}{path}", timeout=timeout) as resp:
            data = json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def poll_until(check: Callable[[], str | None], *, timeout: float, what: str) -> float:
    """Call ``check`` until it returns None (done) or ``timeout`` seconds have passed;
    it returns what is still missing otherwise. Seconds it took; NatsServerError with the
    last thing missing on timeout."""
    start = time.monotonic()
    deadline = start + timeout
    missing = check()
    while missing is not None:
        if time.monotonic() >= deadline:
            raise NatsServerError(f"{what} not within {timeout:g}s: {missing}")
        time.sleep(0.05)
        missing = check()
    return time.monotonic() - start


@dataclass(frozen=True)
class ServerInfo:
    """Where one server of a cluster listens, and its process id (None when stopped)."""

    name: str
    client_url: str
    route_url: str
    monitor_url: str
    leafnode_url: str | None
    pid: int | None


class NatsCluster:
    """``size`` routed nats-servers on loopback, JetStream on all.

    >>> cluster = NatsCluster(3, "/tmp/c")        # doctest: +SKIP
    >>> cluster.start().url                       # doctest: +SKIP
    'nats://127.0.0.1:41233,nats://127.0.0.1:41240,nats://127.0.0.1:41251'
    >>> cluster.kill(1); cluster.restart(1)       # doctest: +SKIP
    >>> cluster.stop()                            # doctest: +SKIP
    """

    def __init__(
        self,
        size: int,
        data_dir: str | os.PathLike[str],
        *,
        config_text: ConfigText | None = None,
        host: str = "127.0.0.1",
        name: str = "vinculum",
        leafnodes: bool = False,
        jetstream_domain: str | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a cluster has at least one server, not {size}")
        self.size = size
        self.name = name
        self.host = host
        self.data_dir = Path(data_dir)
        self.config_text = config_text
        self.leafnodes = leafnodes
        self.jetstream_domain = jetstream_domain
        self.route_ports: list[int] = []
        self.monitor_ports: list[int] = []
        self.members: list[NatsServer] = []
        self._allocate()
        #: seconds the last :meth:`start` took to form the cluster (routes + meta leader)
        self.formed_in: float | None = None

    def _allocate(self) -> None:
        """Choose every port (client, route, monitoring, leafnode) afresh."""
        host, size = self.host, self.size
        self.route_ports = [stable_port(host) for _ in range(size)]
        self.monitor_ports = [stable_port(host) for _ in range(size)]
        self.members = []
        for i in range(size):
            state = self.data_dir / f"n{i}"
            self.members.append(NatsServer(
                data_dir=state, host=host, port=stable_port(host),
                server_name=f"{self.name}-n{i}",
                leafnode_port=stable_port(host) if self.leafnodes else None,
                jetstream_domain=self.jetstream_domain,
                config_text=self._config(i, state),
            ))

    def _config(self, i: int, state: Path) -> str:
        routes = ", ".join(f'"nats-route://{self.host}:{p}"'
                           for j, p in enumerate(self.route_ports) if j != i)
        return "\n".join([
            f'http: "{self.host}:{self.monitor_ports[i]}"',
            "cluster {",
            f"  name: {json.dumps(self.name)}",
            f'  listen: "{self.host}:{self.route_ports[i]}"',
            f"  routes: [{routes}]",
            "}",
            render_config(self.config_text, state / "auth"),
            "",
        ])

    # ------------------------------------------------------------ where
    @property
    def urls(self) -> list[str]:
        """The client URL of every server, in order."""
        return [m.url for m in self.members]

    @property
    def url(self) -> str:
        """All client URLs, comma-separated (what ``--nats-url`` takes)."""
        return ",".join(self.urls)

    @property
    def leafnode_urls(self) -> list[str]:
        """Where leaf nodes connect (empty unless made with ``leafnodes=True``)."""
        return [u for m in self.members if (u := m.leafnode_url) is not None]

    @property
    def servers(self) -> list[ServerInfo]:
        return [
            ServerInfo(name=m.server_name, client_url=m.url,
                       route_url=f"nats-route://{self.host}:{self.route_ports[i]}",
                       monitor_url=self.monitor_url(i), leafnode_url=m.leafnode_url,
                       pid=m.pid)
            for i, m in enumerate(self.members)
        ]

    def monitor_url(self, i: int) -> str:
        return f"http://{self.host}:{self.monitor_ports[i]}"

    def running(self) -> list[int]:
        """Indexes of the servers whose process is alive."""
        return [i for i, m in enumerate(self.members)
                if m.proc is not None and m.proc.poll() is None]

    # ------------------------------------------------------------ lifecycle
    def start(self, *, timeout: float = 30.0, detach: bool = False) -> NatsCluster:
        """Start every server; return once the cluster has formed (see
        :meth:`wait_formed`). On failure every server started is stopped."""
        began = time.monotonic()
        for attempt in range(1, _START_ATTEMPTS + 1):
            try:
                for m in self.members:
                    m.start(timeout=timeout, detach=detach)
                self.wait_formed(timeout=max(1.0, timeout - (time.monotonic() - began)))
                break
            except NatsServerError:
                self.stop()
                if attempt == _START_ATTEMPTS or not self._port_was_taken():
                    raise
                log.warning("a port of nats cluster %s was taken; new ports", self.name)
                self._allocate()
            except BaseException:
                self.stop()
                raise
        self.formed_in = time.monotonic() - began
        log.info("nats cluster %s of %d formed in %.2fs", self.name, self.size,
                 self.formed_in)
        return self

    def _port_was_taken(self) -> bool:
        """Whether a server's log says one of its ports was in use (another process won
        the race for it between choosing and binding)."""
        for m in self.members:
            try:
                if "address already in use" in m.log_file.read_text(errors="replace"):
                    return True
            except OSError:
                continue
        return False

    def wait_formed(self, *, timeout: float = 30.0) -> float:
        """Wait until every running server has a route to every other running one and
        they all name the same JetStream meta leader; seconds it took."""
        return poll_until(self._not_formed, timeout=timeout,
                          what=f"nats cluster {self.name} formed")

    def _not_formed(self) -> str | None:
        alive = self.running()
        names = {self.members[i].server_name for i in alive}
        leaders: set[str] = set()
        for i in alive:
            me = self.members[i].server_name
            routez = monitor_json(self.monitor_url(i), "/routez")
            if routez is None:
                return f"{me} does not answer /routez"
            peers = {str(r.get("remote_name", "")) for r in routez.get("routes") or []}
            if not (names - {me}) <= peers:
                return f"{me} has routes to {sorted(peers)}, not all of {sorted(names - {me})}"
            jsz = monitor_json(self.monitor_url(i), "/jsz")
            leader = ((jsz or {}).get("meta_cluster") or {}).get("leader")
            if not leader:
                return f"{me} knows no JetStream meta leader"
            leaders.add(str(leader))
        if len(leaders) > 1:
            return f"servers disagree on the meta leader: {sorted(leaders)}"
        return None

    def kill(self, i: int) -> None:
        """SIGKILL server ``i`` by its pid (a crash: no goodbye to routes or clients)."""
        self.members[i].stop(kill=True)

    def restart(self, i: int, *, timeout: float = 30.0) -> float:
        """Start server ``i`` again (killing it first if it runs) on the same ports and
        store; return once the cluster has formed again, with the seconds that took."""
        began = time.monotonic()
        self.members[i].stop(kill=True)
        self.members[i].start(timeout=timeout)
        self.wait_formed(timeout=timeout)
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop every server by its pid (SIGTERM, then SIGKILL)."""
        for m in reversed(self.members):
            m.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
