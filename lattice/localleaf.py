"""A leaf-node nats-server on loopback that joins a hub, the way an edge site would.

The hub is a :class:`lattice.localcluster.NatsCluster` or a single
:class:`lattice.localnats.NatsServer`, made with a leafnode listener (``leafnodes=True``,
``leafnode_port=``); the leaf is a :class:`NatsServer` whose configuration has
``leafnodes { remotes: [...] }`` pointing at every leafnode URL of the hub, so it moves to
another hub server when its own dies. Clients on the leaf and on the hub, in the same
account, see each other's subscriptions: pub/sub and request/reply cross the leaf link.

Open mode: one remote, no credentials, the global account on both sides.
Operator mode: the leaf runs with the same operator configuration as the hub (its own
resolver dir, the same preloaded accounts), and each remote binds one local account to
the hub with a user ``.creds`` of that account: the lattice account with a user whose
permissions let through what the site needs (the admin role lets everything through),
and the system account too, with a system-account user (``latticectl up --leaf-of``
issues one of the ``leaf-system`` role), so account updates (revocations) reach the leaf
and the leaf's connect/disconnect advisories reach the hub's monitor.

The leaf has no JetStream of its own by default: its clients use the hub's (KV, object
store, the lease) through the leaf link, but only by the hub's JetStream domain
(``NatsCluster(jetstream_domain=...)``, then ``nc.jetstream(domain=...)``): the plain
``$JS.API`` does not cross a leaf link (nats-server 2.15, measured), ``$JS.<domain>.API``
does, and the domain works for clients of the hub too.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lattice.localcluster import ConfigText, monitor_json, poll_until, render_config, stable_port
from lattice.localnats import NatsServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeafRemote:
    """One ``leafnodes.remotes`` entry: the hub's leafnode URLs, and in operator mode
    the local account it binds and the ``.creds`` of a user of that account on the hub."""

    urls: tuple[str, ...]
    credentials: str | None = None
    account: str | None = None

    def config(self) -> str:
        """This remote as nats-server configuration. Pure."""
        fields = [f"urls: [{', '.join(json.dumps(u) for u in self.urls)}]"]
        if self.credentials:
            fields.append(f"credentials: {json.dumps(self.credentials)}")
        if self.account:
            fields.append(f"account: {json.dumps(self.account)}")
        return "{ " + ", ".join(fields) + " }"


class LeafServer:
    """A nats-server that is a leaf node of a hub.

    >>> hub = NatsCluster(3, "/tmp/c", leafnodes=True).start()              # doctest: +SKIP
    >>> leaf = LeafServer([LeafRemote(tuple(hub.leafnode_urls))], "/tmp/leaf")  # doctest: +SKIP
    >>> leaf.start().url                                                     # doctest: +SKIP
    'nats://127.0.0.1:40411'
    """

    def __init__(
        self,
        remotes: Sequence[LeafRemote],
        data_dir: str | os.PathLike[str],
        *,
        config_text: ConfigText | None = None,
        host: str = "127.0.0.1",
        name: str | None = None,
        jetstream: bool = False,
    ) -> None:
        if not remotes:
            raise ValueError("a leaf node needs at least one remote")
        self.remotes = list(remotes)
        self.data_dir = Path(data_dir)
        self.monitor_port = stable_port(host)
        self.host = host
        port = stable_port(host)
        self.server = NatsServer(
            data_dir=self.data_dir, host=host, port=port, jetstream=jetstream,
            server_name=name or f"vinculum-leaf-{port}",
            config_text=self._config(render_config(config_text, self.data_dir / "auth")),
        )
        #: seconds the last :meth:`start` took until every remote was connected
        self.connected_in: float | None = None

    def _config(self, auth: str) -> str:
        remotes = ",\n    ".join(r.config() for r in self.remotes)
        return "\n".join([
            f'http: "{self.host}:{self.monitor_port}"',
            "leafnodes {",
            '  reconnect: "250ms"',
            f"  remotes: [\n    {remotes}\n  ]",
            "}",
            auth,
            "",
        ])

    @property
    def url(self) -> str:
        """Where clients of the site connect."""
        return self.server.url

    @property
    def pid(self) -> int | None:
        return self.server.pid

    @property
    def name(self) -> str:
        return self.server.server_name

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    def start(self, *, timeout: float = 20.0, detach: bool = False) -> LeafServer:
        """Start the server; return once it accepts clients and every remote is
        connected to the hub. On failure the server is stopped."""
        began = time.monotonic()
        self.server.start(timeout=timeout, detach=detach)
        try:
            self.wait_connected(timeout=max(1.0, timeout - (time.monotonic() - began)))
        except BaseException:
            self.stop()
            raise
        self.connected_in = time.monotonic() - began
        log.info("leaf %s connected to its hub in %.2fs", self.name, self.connected_in)
        return self

    def wait_connected(self, *, timeout: float = 20.0) -> float:
        """Wait until the leaf has one hub connection per remote; seconds it took."""
        return poll_until(self._not_connected, timeout=timeout,
                          what=f"leaf {self.name} connected to its hub")

    def _not_connected(self) -> str | None:
        leafz = monitor_json(self.monitor_url, "/leafz")
        if leafz is None:
            return f"{self.name} does not answer /leafz"
        have = int(leafz.get("leafnodes") or 0)
        if have < len(self.remotes):
            return f"{have} of {len(self.remotes)} leaf connections up (see {self.server.log_file})"
        return None

    def kill(self) -> None:
        """SIGKILL the leaf by its pid."""
        self.server.stop(kill=True)

    def stop(self) -> None:
        """Stop the leaf by its pid (SIGTERM, then SIGKILL)."""
        self.server.stop()

    def __enter__(self) -> LeafServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
