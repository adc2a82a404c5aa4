"""``lattice-host``: the command line of a lattice host.

Parses options (with ``LATTICE_*`` environment fallbacks), connects to NATS through
:func:`lattice.natsutil.connect` (reconnecting forever, re-announcing on every reconnect),
runs one :class:`hostagent.host.Host` until SIGTERM or SIGINT, then stops everything it
runs, publishes ``host_stopped``, drains the connection and exits 0 within
:data:`SHUTDOWN_BUDGET_S` seconds. A second signal exits at once (status 128 + signal).

    lattice-host --nats-url nats://127.0.0.1:4222 --lattice default --label leds=12
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import platformdirs
from nats.aio.client import Client

from hostagent.host import Host, HostConfig
from hostagent.labels import LabelError, host_labels, parse_label
from hostagent.metrics import serve as serve_metrics
from hostagent.workload import MemoryRuntime, Runtime
from lattice.auth.keys import host_id_of_creds
from lattice.auth.store import read_credentials
from lattice.durations import Duration
from lattice.ids import random_host_id
from lattice.logsetup import LOG_FORMATS, bind, setup_logging
from lattice.metricserver import ADDRESS
from lattice.natsflags import NatsFlags, nats_options
from lattice.natsutil import NatsOptions, connect
from lattice.protocol import DEFAULT_LATTICE, Subjects

SHUTDOWN_BUDGET_S = 4.5
log = logging.getLogger("hostagent")


class LabelParam(click.ParamType[str]):
    """A ``key=value`` label, checked as selectors will match it."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        try:
            parse_label(str(value))
        except LabelError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


class LatticeParam(click.ParamType[str]):
    """A lattice id: no dots, spaces or wildcards."""

    name = "ID"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        try:
            Subjects(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


_file = click.Path(exists=True, dir_okay=False)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@nats_options(env_prefix="LATTICE")
@click.option("--lattice", "lattice_id", envvar="LATTICE_ID", default=DEFAULT_LATTICE,
              show_default=True, type=LatticeParam(), help="Lattice id (env LATTICE_ID).")
@click.option("--label", "labels", multiple=True, type=LabelParam(),
              help="A label, repeatable; also LATTICE_LABEL_<KEY>=value variables.")
@click.option("--name", default=None, help="Human name of this host [default: hostname].")
@click.option("--heartbeat", type=Duration(minimum=0.05), default="5s", show_default=True,
              help="Between heartbeats (e.g. 500ms, 5s, or seconds).")
@click.option("--apps-creds", envvar="LATTICE_APPS_CREDS", type=_file,
              help="NATS credentials for application traffic (wascc:messaging), on a "
                   "connection of its own; a secured lattice gives hosts no other way.")
@click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=30.0,
              show_default=True, help="Give up if NATS cannot be reached at start.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="text for people, json for a log pipeline (one object a line).")
@click.option("--metrics-addr", type=ADDRESS, envvar="LATTICE_METRICS_ADDR",
              help="Serve Prometheus metrics, /healthz and /readyz on HOST:PORT [default: off].")
@click.option("--runtime", envvar="LATTICE_RUNTIME", default="wasm",
              show_default=True, type=click.Choice(["wasm", "memory"]),
              help="wasm: run signed WebAssembly actors from gantry and the Python "
                   "providers; memory: record what runs, execute nothing (tests).")
@click.option("--trusted-issuer", "trusted_issuers", multiple=True,
              envvar="LATTICE_TRUSTED_ISSUERS",
              help="Account public key (A...) whose signed actors this host runs; "
                   "repeat for several. Default: any issuer whose signature verifies.")
@click.option("--cache-dir", envvar="LATTICE_CACHE_DIR", type=click.Path(file_okay=False),
              default=None, help="Where compiled WebAssembly is kept between runs "
              "[default: the user cache dir, .../vinculum/wasmtime].")
@click.option("--no-cache", is_flag=True, help="Compile every module afresh; keep nothing.")
@click.option("--compile-timeout", type=Duration(minimum=0.1), default="10s",
              show_default=True, envvar="LATTICE_COMPILE_TIMEOUT",
              help="Longest one module's compile may take (a child process, killed then); "
                   "raise it on a slow host such as a Raspberry Pi.")
def main(nats: NatsFlags, lattice_id: str, labels: Sequence[str], name: str | None,
         heartbeat: float, apps_creds: str | None, connect_timeout: float, log_level: str,
         runtime: str, trusted_issuers: Sequence[str], cache_dir: str | None,
         no_cache: bool, compile_timeout: float, log_format: str,
         metrics_addr: tuple[str, int] | None) -> None:
    """Join a lattice as a host that starts empty and obeys the control protocol."""
    setup_logging(log_level, log_format)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    try:
        all_labels = host_labels(labels, os.environ)
    except LabelError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        host_id = host_id_from(nats.creds)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--creds") from None
    config = HostConfig(
        name=name or socket.gethostname(), labels=all_labels, lattice=lattice_id,
        heartbeat_s=heartbeat, host_id=host_id,
    )
    opts = nats.options(name=f"lattice-host {config.name}")
    apps = replace(opts, name=f"lattice-host {config.name} apps", creds_file=apps_creds,
                   nkey_seed_file=None) if apps_creds else None
    issuers = [i for v in trusted_issuers for i in v.replace(",", " ").split()]
    cache = None if no_cache else Path(cache_dir) if cache_dir else default_cache_dir()
    sys.exit(asyncio.run(run_host(opts, config, connect_timeout=connect_timeout,
                                  runtime_kind=runtime, trusted_issuers=issuers,
                                  cache_dir=cache, apps=apps, metrics_addr=metrics_addr,
                                  compile_timeout=compile_timeout)))


def host_id_from(creds: str | None) -> str:
    """The host id its credentials fix (a secured lattice names it in the host's
    permissions), else a fresh one for this run."""
    if creds:
        fixed = host_id_of_creds(read_credentials(creds))
        if fixed:
            return fixed
    return random_host_id()


def default_cache_dir() -> Path:
    """Compiled modules by default: the user's cache dir (``~/.cache/vinculum/wasmtime``)."""
    return Path(platformdirs.user_cache_dir("vinculum")) / "wasmtime"


def make_runtime(kind: str, nc: Client, lattice_id: str, *,
                 trusted_issuers: Sequence[str] = (), cache_dir: Path | None = None,
                 apps_nc: Client | None = None, compile_timeout: float | None = None
                 ) -> Runtime:
    """The runtime named on the command line."""
    if kind == "memory":
        return MemoryRuntime()
    from hostagent.wasm.compile import CompileBounds  # wasmtime loads only when used
    from hostagent.wasm.runtime import WasmRuntime

    bounds = CompileBounds(timeout_s=compile_timeout) if compile_timeout else None
    return WasmRuntime(nc, lattice_id, trusted_issuers=trusted_issuers, cache_dir=cache_dir,
                       apps_nc=apps_nc, compile_bounds=bounds)


async def run_host(nats: NatsOptions, config: HostConfig, *, connect_timeout: float,
                   runtime_kind: str = "wasm", trusted_issuers: Sequence[str] = (),
                   cache_dir: Path | None = None, apps: NatsOptions | None = None,
                   metrics_addr: tuple[str, int] | None = None,
                   compile_timeout: float | None = None) -> int:
    """Run one host until a signal; the process exit status. ``apps``: a second
    connection for application traffic (providers), when given. Every line logged under
    it, by any module and task, names the host (``--log-format json``: host, host_id)."""
    bind(host=config.name, host_id=config.host_id)  # this task's context and its tasks'
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    seen: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        seen.append(sig)
        if len(seen) > 1:
            log.warning("second signal (%s): exiting at once", sig.name)
            logging.shutdown()
            os._exit(128 + sig.value)
        log.info("%s received: stopping", sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    hosts: list[Host] = []

    async def reconnected() -> None:
        for host in hosts:
            await host.on_reconnect()

    async def disconnected() -> None:
        if not stop.is_set():
            log.warning("disconnected from NATS at %s; reconnecting", nats.url)

    lost: list[bool] = []

    async def closed() -> None:
        if not stop.is_set():
            log.error("NATS closed the connection for good (were this host's credentials "
                      "revoked?); stopping")
            lost.append(True)
            stop.set()

    log.info("host %s (%s) connecting to %s", config.host_id, config.name, nats.url)
    # nats-py retries a first connection forever when reconnects are unlimited, so the
    # start-up deadline is enforced here.
    connecting = asyncio.create_task(asyncio.wait_for(connect(
        nats, initial_timeout=connect_timeout, on_reconnect=reconnected,
        on_disconnect=disconnected, on_closed=closed,
    ), connect_timeout))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not connecting.done():
        connecting.cancel()
        log.info("stopped before NATS was reached")
        return 0
    try:
        nc = connecting.result()
    except (ConnectionError, TimeoutError) as exc:
        log.error("cannot reach NATS at %s within %.1fs: %s", nats.url, connect_timeout,
                  str(exc) or type(exc).__name__)
        return 1
    apps_nc = None
    if apps is not None:
        try:
            apps_nc = await connect(apps, initial_timeout=connect_timeout)
        except ConnectionError as exc:
            log.error("cannot open the application connection: %s", exc)
            await nc.close()
            return 1
    runtime = make_runtime(runtime_kind, nc, config.lattice, trusted_issuers=trusted_issuers,
                           cache_dir=cache_dir, apps_nc=apps_nc,
                           compile_timeout=compile_timeout)
    host = Host(nc, config, runtime=runtime)
    hosts.append(host)
    log.info("connected to %s", nats.url)
    await host.start()
    metrics = await serve_metrics(host, metrics_addr) if metrics_addr else None
    if metrics is not None:
        log.info("metrics on %s", metrics.url)
    await stopping
    if metrics is not None:
        await metrics.close()
    try:
        await asyncio.wait_for(_shutdown(host, apps_nc), SHUTDOWN_BUDGET_S)
    except TimeoutError:
        log.error("shutdown did not finish within %.1fs", SHUTDOWN_BUDGET_S)
        return 1
    return 1 if lost else 0


async def _shutdown(host: Host, apps_nc: Client | None) -> None:
    await host.stop()
    close = getattr(host.runtime, "close", None)
    if close is not None:
        try:
            await close()
        except Exception as exc:
            log.warning("runtime did not close cleanly: %r", exc)
    try:
        await asyncio.wait_for(host.nc.drain(), 2.0)
    except Exception as exc:
        log.warning("drain failed (%s); closing", type(exc).__name__ or exc)
        await host.nc.close()
    if apps_nc is not None:
        await apps_nc.close()


if __name__ == "__main__":
    main()
