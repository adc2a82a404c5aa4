"""``vinculum``: the agent's command line.

``vinculum --repo PATH|URL --nats-url URL [--branch B] [--path P] [--lattice ID]
[--interval 30s] [--resync 30s] [--data-dir D] [--verify-commits ssh:FILE|gpg:FILE]
[--replicas N] [--js-domain D] [--monitor-creds FILE] [--gone-grace 250ms]
[--rebalance-interval 10s]``
(durations: ``250ms``, ``30s``, ``2m``, or seconds) runs the agent until SIGTERM or SIGINT
(a second signal exits at once). ``vinculum sync`` asks a running agent to fetch now.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import nats.errors
import platformdirs

from gitsync.verify import PolicyError, SignaturePolicy, parse_policy
from lattice.durations import DURATION
from lattice.errors import VinculumError
from lattice.gctune import tune_for_large_heaps
from lattice.logsetup import LOG_FORMATS, setup_logging
from lattice.metricserver import ADDRESS
from lattice.natsflags import NatsFlags, nats_options
from lattice.natsutil import NatsOptions, connect
from lattice.protocol import Subjects, SyncNudge, encode
from reconciler.agent import Agent
from reconciler.config import AgentConfig
from reconciler.hookflags import Hooks, hook_options
from reconciler.metrics import run_operated

if TYPE_CHECKING:
    _PolicyParam = click.ParamType[SignaturePolicy]
else:  # click < 8.2 has no generic ParamType
    _PolicyParam = click.ParamType

#: every duration option: ``250ms``, ``30s``, ``2m``, ``1h`` or a number of seconds
SECONDS = DURATION
#: the levels --log-level accepts (any case)
LOG_LEVELS = ("debug", "info", "warning", "error")


class Policy(_PolicyParam):
    """A commit signature policy: ``ssh:ALLOWED_SIGNERS`` or ``gpg:KEYRING``, whose file
    must be readable now."""

    name = "ssh:FILE|gpg:FILE"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> SignaturePolicy:
        if isinstance(value, SignaturePolicy):
            return value
        try:
            policy = parse_policy(str(value))
            policy.read()
        except PolicyError as exc:
            self.fail(exc.message.removeprefix("--verify-commits").lstrip(": "), param, ctx)
        return policy


POLICY = Policy()


@click.group(invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--repo", envvar="VINCULUM_REPO", help="Repository: a local path or a URL.")
@click.option("--branch", help="Branch to follow (default: the repository's default).")
@click.option("--path", "manifests_path", default="", help="Manifests folder in the repo.")
@click.option("--interval", type=SECONDS, default="30s", show_default=True,
              help="Between fetches of a remote repository (e.g. 30s, 2m).")
@click.option("--resync", type=SECONDS, default="30s", show_default=True,
              help="Between full resyncs that correct drift (e.g. 30s).")
@click.option("--data-dir", type=click.Path(path_type=Path),
              help="Where the agent keeps its mirror of a remote repository.")
@click.option("--bid-timeout", type=SECONDS, default="250ms", show_default=True,
              help="Longest auction window (ends early on the last answer).")
@click.option("--lease-ttl", type=SECONDS, default="6s", show_default=True,
              help="Leader lease TTL (HA: a successor takes over within TTL + TTL/3).")
@click.option("--verify-commits", envvar="VINCULUM_VERIFY_COMMITS", type=POLICY,
              help="Sync a head only when it is signed by a key of this git allowed-signers "
                   "file (ssh:FILE) or armored OpenPGP keyring (gpg:FILE); any other head "
                   "is Invalid (UntrustedCommit).")
@click.option("--replicas", type=click.IntRange(1, 5), default=1, show_default=True,
              envvar="VINCULUM_REPLICAS",
              help="Replicas of the JetStream buckets the agent creates (the leader "
                   "lease): 3 on a cluster of three servers or more.")
@click.option("--monitor-creds", envvar="VINCULUM_MONITOR_CREDS",
              type=click.Path(exists=True, dir_okay=False),
              help="System-account credentials allowed to read the lattice account's "
                   "connect/disconnect advisories (`latticectl up` issues them): a host "
                   "whose connection closes is seen gone at once, not after 3 heartbeats.")
@click.option("--gone-grace", type=SECONDS, default="250ms", show_default=True,
              help="How long a host whose connection closed has to reconnect (to any "
                   "server) before it counts as gone.")
@click.option("--rebalance-interval", type=SECONDS, default="10s", show_default=True,
              help="At most one rebalancing move per deployment in this time (moves "
                   "happen when a host returns and replicas are packed or off their "
                   "spread).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False))
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="text for people, json for a log pipeline (one object a line).")
@click.option("--metrics-addr", type=ADDRESS, envvar="VINCULUM_METRICS_ADDR",
              help="Serve Prometheus metrics, /healthz and /readyz on HOST:PORT [default: off].")
@nats_options(env_prefix="VINCULUM")
@click.option("--lattice", envvar="VINCULUM_LATTICE", default="default", show_default=True,
              help="Lattice id.")
@hook_options
@click.pass_context
def main(ctx: click.Context, repo: str | None, branch: str | None, manifests_path: str,
         interval: float, resync: float, data_dir: Path | None, bid_timeout: float,
         lease_ttl: float, verify_commits: SignaturePolicy | None, replicas: int,
         monitor_creds: str | None, gone_grace: float, rebalance_interval: float,
         hooks: Hooks,
         log_level: str, log_format: str, metrics_addr: tuple[str, int] | None,
         nats: NatsFlags, lattice: str) -> None:
    """Run the vinculum: reconcile the manifests in a git branch with a NATS lattice.

    \b
    Examples:
      vinculum --repo ./gitops --nats-url nats://127.0.0.1:4222
      vinculum --repo https://git.example/ops.git --branch main --interval 60
      vinculum sync --nats-url nats://127.0.0.1:4222
    """
    ctx.ensure_object(dict)
    ctx.obj.update(nats=replace(nats.options(name="vinculum"), js_replicas=replicas),
                   lattice=lattice)
    if ctx.invoked_subcommand is not None:
        return
    if not repo:
        raise click.UsageError("--repo is required (a local path or a URL)")
    setup_logging(log_level, log_format)
    # two INFO lines per scheduled resync say nothing an operator needs
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.root.level))
    # "N changes detected" on every write in a watched repo (most are the agent's own
    # status commits): a quarter of the log at INFO, noise to an operator
    logging.getLogger("watchfiles").setLevel(max(logging.WARNING, logging.root.level))
    config = AgentConfig(
        repo=repo, branch=branch, path=manifests_path, nats=ctx.obj["nats"], lattice=lattice,
        interval=interval, resync=resync, bid_timeout=bid_timeout, lease_ttl=lease_ttl,
        verify_commits=verify_commits, js_replicas=replicas, monitor_creds=monitor_creds,
        gone_grace=gone_grace, rebalance_interval=rebalance_interval, metrics_addr=metrics_addr,
        webhook=hooks.webhook, alerts=hooks.alerts,
        data_dir=data_dir or Path(platformdirs.user_data_dir("vinculum")) / lattice,
    )
    tune_for_large_heaps()  # the collector took most of a 10,000-deployment pass's CPU
    _run_or_say(_run(config))


def _run_or_say(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work``; an error of ours or an unreachable NATS is one line on stderr and
    exit status 1, as click prints its own errors (the log has the detail)."""
    try:
        asyncio.run(work)
    except (VinculumError, ConnectionError) as exc:
        message = exc.message if isinstance(exc, VinculumError) else str(exc)
        raise click.ClickException(message) from None


async def _run(config: AgentConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            os._exit(130)  # second signal: at once
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await run_operated(Agent(config), stop)


@main.command()
@click.option("--reason", default="vinculum sync", help="Why (logged by the agent).")
@click.pass_obj
def sync(obj: dict[str, object], reason: str) -> None:
    """Ask the running agent to fetch its repository now; exit 1 when no agent answers."""

    async def go() -> None:
        opts = obj["nats"]
        assert isinstance(opts, NatsOptions)
        nc = await connect(opts, initial_timeout=3.0)
        try:
            await nc.request(Subjects(str(obj["lattice"])).nudge,
                             encode(SyncNudge(reason=reason)), timeout=3.0)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError):
            raise click.ClickException(
                f"no agent answered on lattice {obj['lattice']} within 3s") from None
        finally:
            await nc.close()

    _run_or_say(go())
    click.echo("nudge sent; the agent fetches now")


if __name__ == "__main__":
    main()
