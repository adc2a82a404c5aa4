"""The nats-servers of a local lattice: a hub of one or N servers, or a leaf-node site.

Used by :class:`cli.localstack.LocalStack`. Every hub runs with the JetStream domain
:data:`JS_DOMAIN` (the only way clients of a leaf node reach the hub's JetStream) and a
leafnode listener, so an edge site can join it (``latticectl up --leaf-of URL``), and an
HTTP monitoring port on loopback (``latticectl get servers`` reads ``/varz``). One server
is a :class:`lattice.localnats.NatsServer` as ``up`` always started it; ``--cluster N`` is a
:class:`lattice.localcluster.NatsCluster` whose buckets get :func:`replicas_for` replicas; a
site is a :class:`lattice.localleaf.LeafServer` with, in operator mode, two remotes: the
lattice's account and the system account. In operator mode each server gets its own
resolver dir (``AuthStore.server_config`` is a function of it).

:class:`ServerRecord` is what ``state.json`` keeps of each server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lattice.localcluster import NatsCluster, replicas_for, stable_port
from lattice.localleaf import LeafRemote, LeafServer
from lattice.localnats import NatsServer

#: The JetStream domain of every hub ``latticectl up`` starts.
JS_DOMAIN = "vinculum"

#: Operator-mode configuration as a function of a server's resolver dir, or None (open).
AuthConfig = Callable[[Path], str] | None


@dataclass(frozen=True)
class ServerRecord:
    """One server of a local lattice as ``state.json`` records it."""

    name: str
    client_url: str
    monitor_url: str
    leafnode_url: str | None
    pid: int
    log: str
    role: str = "hub"  #: ``hub`` or ``leaf``


class Servers:
    """The running servers of one ``up``: where clients connect and how to stop them."""

    def __init__(self, records: list[ServerRecord], *, replicas: int,
                 stop: Callable[[], None]) -> None:
        self.records = records
        self.replicas = replicas
        self._stop = stop

    @property
    def urls(self) -> list[str]:
        return [r.client_url for r in self.records]

    @property
    def url(self) -> str:
        """Every client URL, comma-separated (``--nats-url``)."""
        return ",".join(self.urls)

    def url_for(self, i: int) -> str:
        """All client URLs, starting with server ``i % N``: client ``i``'s preference
        (hosts spread round-robin, each able to reconnect to any other)."""
        urls = self.urls
        k = i % len(urls)
        return ",".join(urls[k:] + urls[:k])

    @property
    def leafnode_urls(self) -> list[str]:
        return [u for r in self.records if (u := r.leafnode_url) is not None]

    def stop(self) -> None:
        self._stop()


def start_hub(state_dir: Path, logs: Path, *, size: int, listen: str, auth: AuthConfig,
              detach: bool) -> Servers:
    """One server (``size`` 1, in ``<state_dir>/nats``, logging to ``logs/nats.log`` as
    ``up`` always did) or a routed cluster of ``size``; returns once all accept clients
    (and, for a cluster, it has formed)."""
    if size == 1:
        data = state_dir / "nats"
        monitor = stable_port("127.0.0.1")
        conf = f'http: "127.0.0.1:{monitor}"\n'
        if auth is not None:
            conf += auth(data / "jwt")
        server = NatsServer(data_dir=data, log_file=logs / "nats.log", host=listen,
                            config_text=conf, leafnode_port=stable_port(listen),
                            jetstream_domain=JS_DOMAIN, server_name="vinculum-n0")
        server.start(detach=detach)
        assert server.pid is not None
        record = ServerRecord(name=server.server_name, client_url=server.url,
                              monitor_url=f"http://127.0.0.1:{monitor}",
                              leafnode_url=server.leafnode_url, pid=server.pid,
                              log=str(logs / "nats.log"))
        return Servers([record], replicas=1, stop=server.stop)
    cluster = NatsCluster(size, state_dir / "nats", config_text=auth, host=listen,
                          leafnodes=True, jetstream_domain=JS_DOMAIN)
    cluster.start(detach=detach)
    records = [ServerRecord(name=s.name, client_url=s.client_url, monitor_url=s.monitor_url,
                            leafnode_url=s.leafnode_url, pid=s.pid or 0,
                            log=str(m.log_file))
               for s, m in zip(cluster.servers, cluster.members, strict=True)]
    return Servers(records, replicas=replicas_for(size), stop=cluster.stop)


def start_leaf(state_dir: Path, *, hub_leafnode_urls: list[str], site: str,
               auth: AuthConfig, link_creds: str | None, account: str | None,
               system_link_creds: str | None = None, system_account: str | None = None,
               detach: bool) -> Servers:
    """A leaf-node server for site ``site``, joined to the hub at ``hub_leafnode_urls``
    (in operator mode binding ``account`` with ``link_creds`` and, given
    ``system_link_creds``, the system account ``system_account`` too, so account updates
    reach the site and its advisories reach the hub); returns once every link is up."""
    urls = tuple(hub_leafnode_urls)
    remotes = [LeafRemote(urls, credentials=link_creds, account=account)]
    if system_link_creds is not None:
        remotes.append(LeafRemote(urls, credentials=system_link_creds, account=system_account))
    leaf = LeafServer(remotes, state_dir / "nats", config_text=auth,
                      name=f"vinculum-leaf-{site}")
    leaf.start(detach=detach)
    assert leaf.pid is not None
    record = ServerRecord(name=leaf.name, client_url=leaf.url, monitor_url=leaf.monitor_url,
                          leafnode_url=None, pid=leaf.pid, log=str(leaf.server.log_file),
                          role="leaf")
    return Servers([record], replicas=1, stop=leaf.stop)
