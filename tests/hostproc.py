"""Spawn real ``lattice-host`` processes for tests, and clean them up by pid.

:func:`spawn_host` starts the console script installed next to the interpreter (or
``python -m hostagent.main`` when it is missing) with its stdout and stderr going to a log
file in a temporary directory: no pipes that could fill up and block the host. Every
process is registered; :func:`stop_all` (also run at interpreter exit) stops whatever a
test left running, and :class:`HostPool` does the same as a context manager. The second
half observes and drives hosts over the bus, as the agent would: :class:`EventRecorder`
keeps every event of a lattice and waits for the ones a test expects, :func:`ping`,
:func:`auction` and :func:`command` speak the control protocol.

    proc = spawn_host(nats_server.url, lattice_id, labels={"leds": "12"}, name="pi")
    ...
    assert proc.terminate().wait(timeout=10) == 0
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hostagent.host import server_barrier
from lattice.natsutil import scatter_gather
from lattice.protocol import (
    AuctionReply,
    AuctionRequest,
    CloudEvent,
    CommandAck,
    CommandOp,
    EventType,
    HostInventory,
    Message,
    PingRequest,
    Subjects,
    decode,
    decode_event,
    encode,
)

_RUNNING: dict[int, HostProcess] = {}


def host_command() -> list[str]:
    """How to start a host: the ``lattice-host`` script next to the interpreter, if any."""
    script = Path(sys.executable).parent / "lattice-host"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "hostagent.main"]


class HostProcess:
    """One running ``lattice-host``; its output is in :attr:`log_path`."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, name: str) -> None:
        self.proc = proc
        self.log_path = log_path
        self.name = name

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> HostProcess:
        """Send ``sig`` to the process (no-op if it already exited)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self

    def terminate(self) -> HostProcess:
        return self.signal(signal.SIGTERM)

    def kill(self) -> HostProcess:
        return self.signal(signal.SIGKILL)

    def wait(self, timeout: float = 10.0) -> int:
        """The exit status; raises ``subprocess.TimeoutExpired`` if still running."""
        code = self.proc.wait(timeout=timeout)
        _RUNNING.pop(self.pid, None)
        return code

    def stop(self, timeout: float = 8.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
        self.terminate()
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.wait(timeout)

    def log(self) -> str:
        """Everything the host wrote so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __repr__(self) -> str:
        return f"HostProcess(name={self.name!r}, pid={self.pid}, log={str(self.log_path)!r})"


def spawn_host(
    nats_url: str,
    lattice: str,
    *,
    labels: Mapping[str, str],
    name: str,
    heartbeat: float = 0.5,
    env: Mapping[str, str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    extra_args: Iterable[str] = (),
    runtime: str = "memory",
) -> HostProcess:
    """Start ``lattice-host`` for ``lattice`` on ``nats_url`` with ``labels`` and ``name``.

    ``runtime`` is ``memory`` (records, executes nothing: fast) unless a test runs real
    WebAssembly (``"wasm"``); a ``--runtime`` in ``extra_args`` wins.
    ``env`` adds variables to the host's environment; output goes to
    ``<log_dir>/<name>-<n>.log`` (a fresh temporary directory by default).
    """
    directory = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="hosts-"))
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / f"{name}-{time.monotonic_ns()}.log"
    args = [*host_command(), "--nats-url", nats_url, "--lattice", lattice, "--name", name,
            "--heartbeat", str(heartbeat), "--log-level", "debug"]
    for key, value in sorted(labels.items()):
        args += ["--label", f"{key}={value}"]
    extra = list(extra_args)
    if "--runtime" not in extra:
        args += ["--runtime", runtime]
    args += extra
    # compiled modules go to the test's directory, never to the user's cache
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1",
                "LATTICE_CACHE_DIR": str(directory / "wasm-cache"), **(env or {})}
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=full_env, start_new_session=True,
        )
    host = HostProcess(proc, log_path, name)
    _RUNNING[proc.pid] = host
    return host


def stop_all(timeout: float = 8.0) -> None:
    """Stop every host this module started that is still running."""
    for host in list(_RUNNING.values()):
        try:
            host.stop(timeout)
        except (OSError, subprocess.SubprocessError):
            pass
        _RUNNING.pop(host.pid, None)


atexit.register(stop_all)


class HostPool:
    """Hosts on one NATS and lattice, stopped together when the block ends.

    >>> with HostPool(url, "t1", log_dir=tmp_path) as pool:     # doctest: +SKIP
    ...     pool.spawn(labels={"leds": "12"}, name="pi")
    """

    def __init__(self, nats_url: str, lattice: str, *,
                 log_dir: str | os.PathLike[str] | None = None, heartbeat: float = 0.5) -> None:
        self.nats_url = nats_url
        self.lattice = lattice
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="hosts-"))
        self.heartbeat = heartbeat
        self.hosts: list[HostProcess] = []

    def spawn(self, *, labels: Mapping[str, str], name: str,
              env: Mapping[str, str] | None = None,
              extra_args: Iterable[str] = (), runtime: str = "memory") -> HostProcess:
        host = spawn_host(self.nats_url, self.lattice, labels=labels, name=name,
                          heartbeat=self.heartbeat, env=env, log_dir=self.log_dir,
                          extra_args=extra_args, runtime=runtime)
        self.hosts.append(host)
        return host

    def stop(self) -> None:
        for host in self.hosts:
            host.terminate()
        for host in self.hosts:
            try:
                host.wait(8.0)
            except subprocess.TimeoutExpired:
                host.kill().wait(8.0)

    def __enter__(self) -> HostPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# ---------------------------------------------------------------- the bus, as the agent sees it

class EventRecorder:
    """Every event of one lattice, in arrival order; use as ``async with``."""

    def __init__(self, nc: Client, lattice: str) -> None:
        self.nc = nc
        self.subjects = Subjects(lattice)
        self.events: list[CloudEvent] = []
        self.raw: list[bytes] = []
        self._sub: Subscription | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> EventRecorder:
        async def on_event(msg: Msg) -> None:
            self.raw.append(msg.data)
            event = decode_event(msg.data, msg.subject)
            if event is not None:
                self.events.append(event)
                self._changed.set()

        self._sub = await self.nc.subscribe(self.subjects.events, cb=on_event)
        await server_barrier(self.nc)  # flush() is no barrier in nats-py 2.16
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sub is not None and not self.nc.is_closed:
            await self._sub.unsubscribe()

    def of(self, event_type: EventType, *, host_id: str | None = None,
           where: Callable[[dict[str, Any]], bool] | None = None) -> list[CloudEvent]:
        """Events of ``event_type`` (from ``host_id``, whose data satisfy ``where``)."""
        return [
            e for e in self.events
            if e.event_type == event_type
            and (host_id is None or e.source == host_id)
            and (where is None or where(e.data))
        ]

    def types(self, *, host_id: str | None = None) -> list[str]:
        """Short types of the events so far, in order."""
        return [str(e.event_type) for e in self.events if host_id in (None, e.source)]

    async def wait_for(self, event_type: EventType, *, host_id: str | None = None,
                       count: int = 1, where: Callable[[dict[str, Any]], bool] | None = None,
                       timeout: float = 10.0) -> list[CloudEvent]:
        """Wait until ``count`` matching events arrived; return them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = self.of(event_type, host_id=host_id, where=where)
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{count} {event_type.value} event(s) from {host_id or 'any host'} not seen "
                    f"within {timeout}s; saw {self.types()}"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass


async def ping(nc: Client, lattice: str, *, timeout: float = 1.0,
               expect: int | None = None) -> list[HostInventory]:
    """Inventories of the hosts that answer a ping within ``timeout``."""
    replies = await scatter_gather(nc, Subjects(lattice).ping, encode(PingRequest()),
                                   timeout=timeout, max_replies=expect)
    found = [decode(HostInventory, m.data, subject=m.subject) for m in replies]
    return [inv for inv in found if inv is not None]


async def auction(nc: Client, lattice: str, request: AuctionRequest, *, expect: int,
                  timeout: float = 5.0) -> dict[str, AuctionReply]:
    """Replies to an auction by host id, once ``expect`` hosts answered (or the deadline)."""
    replies = await scatter_gather(nc, Subjects(lattice).auction(request.kind),
                                   encode(request), timeout=timeout, max_replies=expect)
    found = [decode(AuctionReply, m.data, subject=m.subject) for m in replies]
    return {r.host_id: r for r in found if r is not None}


async def command(nc: Client, lattice: str, host_id: str, op: CommandOp | str,
                  payload: Message | bytes, *, timeout: float = 5.0) -> CommandAck:
    """Send one command to a host and parse its ack."""
    data = payload if isinstance(payload, bytes) else encode(payload)
    subject = f"{Subjects(lattice).prefix}.ctl.host.{host_id}.{op}"
    reply = await nc.request(subject, data, timeout=timeout)
    return CommandAck.model_validate_json(reply.data)
