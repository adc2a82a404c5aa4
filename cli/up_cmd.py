"""``latticectl up`` / ``latticectl down``: a whole local lattice on one machine.

``up`` starts a local nats-server (or a routed ``--cluster`` of them; or, with
``--leaf-of``, a leaf-node site joined to a running hub), N hosts and the agent on a
repository (a copy of ``examples/repo`` made into a git repository under the state dir,
unless ``--repo``), waits until every host answers a ping and the agent is ready (its
``/readyz``), then either prints lattice
events until Ctrl-C (and stops everything) or, with ``--detach``, records the pids and
NATS URLs and returns.
``down`` stops what a detached ``up`` recorded, by pid.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from pathlib import Path

import click

from cli.localstack import (
    LocalStack,
    StackState,
    forget,
    is_ours,
    parse_host_labels,
    stop_records,
)
from cli.output import plural
from cli.reach import ping_hosts
from cli.settings import CliError, Settings, default_state_dir
from gitsync.verify import PolicyError, parse_policy
from lattice.durations import DURATION, Duration
from lattice.natsutil import NatsOptions, connect
from lattice.protocol import CloudEvent, EventType, Subjects, decode_event

DEFAULT_LABELS = ("0:leds=12",)


async def wait_for_hosts(url: str | NatsOptions, lattice: str, count: int, *,
                         timeout: float, names: frozenset[str] | None = None) -> int:
    """Poll with pings until ``count`` hosts answer (only hosts named in ``names``, if
    given: a leaf site waits for its own, not for the hub's) or ``timeout`` passes; the
    count seen."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        seen = len([inv for inv in await ping_hosts(url, lattice, timeout=0.5)
                    if names is None or inv.name in names])
        if seen >= count:
            break
    return seen


def wait_for_agent(metrics_url: str, *, timeout: float) -> bool:
    """Poll the agent's ``/readyz`` (beside ``metrics_url``) until it answers 200 -- it
    leads, or follows with the branch head evaluated -- or ``timeout`` passes."""
    readyz = metrics_url.rsplit("/", 1)[0] + "/readyz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(readyz, timeout=1.0) as answer:
                if answer.status == 200:
                    return True
        except OSError:  # not listening yet, or 503: not ready yet
            pass
        time.sleep(0.05)  # a poll interval, bounded by the deadline
    return False


def format_event(ev: CloudEvent) -> str:
    """One line for a lattice event, the way ``up`` prints them."""
    et = ev.event_type
    d = ev.data
    who = d.get("name") or d.get("host_id", ev.source)[:12]
    what = ""
    if et in (EventType.ACTOR_STARTED, EventType.ACTOR_STOPPED, EventType.ACTOR_START_FAILED):
        what = d.get("actor_id", "")[:12]
    elif et in (EventType.PROVIDER_STARTED, EventType.PROVIDER_STOPPED,
                EventType.PROVIDER_START_FAILED):
        what = f"{d.get('capability_id')}/{d.get('binding_name')}"
    elif et in (EventType.BINDING_PUT, EventType.BINDING_DELETED, EventType.BINDING_PUT_FAILED):
        what = f"{d.get('actor_id', '')[:12]} -> {d.get('capability_id')}/{d.get('binding_name')}"
    elif et == EventType.HOST_STARTED:
        what = " ".join(f"{k}={v}" for k, v in sorted(d.get("labels", {}).items())
                        if not k.startswith("hostcore."))
    reason = d.get("reason") or ""
    line = f"{ev.time:%H:%M:%S} {(et.value if et else ev.type):<22} {who:<12} {what}"
    return f"{line}  ({reason})" if reason else line


async def _print_events(url: str | NatsOptions, lattice: str, stop: asyncio.Event) -> None:
    nc = await connect(url)
    quiet = {EventType.HOST_HEARTBEAT}

    async def on_event(msg: object) -> None:
        ev = decode_event(msg.data, msg.subject)  # type: ignore[attr-defined]
        if ev is not None and ev.event_type not in quiet:
            click.echo(format_event(ev))

    await nc.subscribe(Subjects(lattice).events, cb=on_event)
    try:
        await stop.wait()
    finally:
        await nc.close()


def _run_foreground(url: str | NatsOptions, lattice: str) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await _print_events(url, lattice, stop)

    asyncio.run(main())


def _policy(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--verify-commits``, checked here (scheme, readable file) and made absolute."""
    if value is None:
        return None
    try:
        policy = parse_policy(value)
        policy.read()
    except PolicyError as exc:
        raise click.BadParameter(exc.message.removeprefix("--verify-commits").lstrip(": "),
                                 ctx=ctx, param=param) from None
    return str(policy)


@click.command()
@click.option("--hosts", default=3, show_default=True, type=click.IntRange(0, 200),
              help="How many hosts to start.")
@click.option("--host-label", "host_labels", multiple=True, metavar="INDEX:KEY=VALUE",
              help="A label for one host, e.g. 0:leds=12 (default: 0:leds=12).")
@click.option("--detach", is_flag=True, help="Run in the background; stop with `down`.")
@click.option("--no-agent", is_flag=True, help="Start NATS and hosts only.")
@click.option("--heartbeat", type=Duration(minimum=0.05), default="2s", show_default=True,
              help="Host heartbeat (e.g. 500ms, 2s).")
@click.option("--resync", type=DURATION, default="30s", show_default=True,
              help="Agent's periodic full resync (e.g. 30s, 2m).")
@click.option("--verify-commits", metavar="ssh:FILE|gpg:FILE", callback=_policy,
              help="Passed to the agent: sync only heads signed by a key of this git "
                   "allowed-signers file (ssh:) or armored OpenPGP keyring (gpg:).")
@click.option("--listen", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="Address NATS listens on; another address lets hosts on other "
                   "machines join (`latticectl host creds`).")
@click.option("--cluster", default=1, show_default=True, type=click.IntRange(1, 9),
              help="How many routed nats-servers (JetStream on all; buckets get "
                   "min(3, N) replicas; hosts spread over them, each given every URL).")
@click.option("--leaf-of", metavar="URL",
              help="Start a leaf-node site instead: a nats-server joined to the hub whose "
                   "leafnode URL this is (`leafnodes:` in the hub's summary), and "
                   "--hosts hosts on it; no agent, no repo (the hub's agent manages them). "
                   "Use another --state-dir than the hub's.")
@click.option("--hub-state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="With --leaf-of in operator mode: the hub's state dir, whose keys issue "
                   "the site's credentials (default: the default state dir).")
@click.option("--site", default="edge", show_default=True,
              help="With --leaf-of: the site's name (its server vinculum-leaf-SITE, its "
                   "hosts SITE-host-<i>).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="The agent's and hosts' log lines (`latticectl logs` "
              "reads both; json carries entity, host, revision and trace).")
@click.option("--insecure", is_flag=True,
              help="Run NATS without authentication (anyone who reaches it may command "
                   "hosts); the default is operator mode with a credential per role.")
@click.pass_obj
def up(
    settings: Settings,
    hosts: int,
    host_labels: tuple[str, ...],
    detach: bool,
    no_agent: bool,
    heartbeat: float,
    resync: float,
    verify_commits: str | None,
    listen: str,
    cluster: int,
    leaf_of: str | None,
    hub_state_dir: Path | None,
    site: str,
    insecure: bool,
    log_format: str,
) -> None:
    """Start a local lattice: nats-server (or --cluster N), HOSTS hosts and the agent.

    The agent watches --repo, or a git copy of examples/repo made under the state dir.
    With --leaf-of, start an edge site joined to a running hub instead.

    \b
    Examples:
      latticectl up                              # foreground; Ctrl-C stops everything
      latticectl up --detach --hosts 5 --host-label 0:leds=12 --host-label 1:gpu=yes
      latticectl up --detach --verify-commits ssh:~/.config/git/allowed_signers
      latticectl up --detach --cluster 3         # three routed servers, R3 buckets
      latticectl --state-dir /tmp/site up --detach --leaf-of nats-leaf://127.0.0.1:7422 \\
          --hosts 1 --host-label 0:zone=edge     # an edge site of the default hub
      latticectl down
    """
    existing = StackState.load(settings.state_dir)
    if existing and stop_records_alive(existing):
        raise CliError(
            f"a lattice is already up (state in {settings.state_dir}); run `latticectl down` first"
        )
    try:
        labels = parse_host_labels(host_labels or DEFAULT_LABELS if hosts else (), hosts)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--host-label") from None
    if leaf_of and cluster > 1:
        raise click.UsageError("--leaf-of starts one leaf-node server; --cluster is the hub's")
    hub_dir = (hub_state_dir or default_state_dir()) if leaf_of else None
    if hub_dir is not None and hub_dir.resolve() == settings.state_dir.resolve():
        raise click.UsageError("a leaf site needs a --state-dir of its own, not the hub's "
                               f"({hub_dir})")
    stack = LocalStack(
        state_dir=settings.state_dir, lattice=settings.lattice, hosts=hosts, host_labels=labels,
        repo=settings.repo, heartbeat=heartbeat, with_agent=not no_agent, resync=resync,
        secure=not insecure, listen=listen, cluster=cluster, leaf_of=leaf_of,
        hub_state_dir=hub_dir, site=site, log_format=log_format,
        agent_args=("--verify-commits", verify_commits) if verify_commits else (),
    )
    if insecure:
        click.echo("warning: --insecure: NATS accepts anyone who reaches it, and any client "
                   "can command the hosts; use it only on a machine you alone use", err=True)
    state = stack.start(detach=detach)
    try:
        own = frozenset(stack.host_name(i) for i in range(hosts)) if leaf_of else None
        seen = asyncio.run(wait_for_hosts(state.nats(), state.lattice, hosts, timeout=20.0,
                                          names=own))
        if seen < hosts:
            raise CliError(
                f"only {seen} of {hosts} hosts answered a ping within 20 s; "
                f"see the logs in {settings.state_dir / 'logs'}"
            )
        if state.metrics_url and not wait_for_agent(state.metrics_url, timeout=20.0):
            raise CliError(f"the agent was not ready within 20 s ({state.metrics_url} "
                           f"/readyz); see the logs in {settings.state_dir / 'logs'}")
        click.echo(f"nats:    {state.nats_url}  (lattice {state.lattice}, "
                   f"{'operator mode' if state.secure else 'INSECURE: no authentication'})")
        kind = (f"leaf site {site} of {leaf_of}" if leaf_of
                else f"{plural(len(state.servers), 'server')}, JetStream domain "
                     f"{state.js_domain}, R{state.replicas}")
        click.echo(f"servers: {kind}  (`latticectl get servers`)")
        if state.leafnode_urls:
            click.echo(f"leafnodes: {','.join(state.leafnode_urls)}  (`up --leaf-of` joins here)")
        if state.secure:
            click.echo(f"creds:   {settings.state_dir / 'creds'}  (admin.creds is latticectl's)")
        click.echo(f"hosts:   {hosts} up")
        for name, actor_id in sorted(state.actors.items()):
            click.echo(f"actor:   {name} {actor_id}  (signed with the demo seeds, pushed)")
        agent = ("the hub's" if leaf_of else
                 "watching " + state.repo if not no_agent else "not started")
        click.echo(f"agent:   {agent}")
        if state.metrics_url:
            click.echo(f"metrics: {state.metrics_url}  (/healthz, /readyz on the same port)")
        click.echo(f"logs:    {settings.state_dir / 'logs'}  (`latticectl logs`)")
        click.echo("web:     `latticectl dashboard` serves a live, read-only view")
        if detach:
            state_file = settings.state_dir / "state.json"
            click.echo(f"state:   {state_file}  (stop with `latticectl down`)")
            return
        click.echo("events (Ctrl-C stops the lattice):")
        _run_foreground(state.nats(), state.lattice)
        click.echo("stopping...")
        stack.stop()
    except BaseException:
        if not detach:
            stack.stop()
        else:
            stop_records(state.procs)
            (Path(state.state_dir) / "state.json").unlink(missing_ok=True)
        raise


def stop_records_alive(state: StackState) -> bool:
    return any(is_ours(r) for r in state.procs)


@click.command()
@click.pass_obj
def down(settings: Settings) -> None:
    """Stop the lattice that `latticectl up --detach` started (by its recorded pids).

    Only the processes `up` recorded are signalled, and only while each still is the
    process that was started (same command line and create time). The repository stays,
    and later commands still find it (the state dir keeps its path in last.json).

    \b
    Examples:
      latticectl down
      latticectl --state-dir /tmp/lab down    # the lattice of `--state-dir /tmp/lab up --detach`
    """
    state = StackState.load(settings.state_dir)
    if state is None:
        raise CliError(f"nothing is up: no state in {settings.state_dir}")
    stopped = stop_records(state.procs)
    forget(settings.state_dir, state)
    click.echo(f"stopped {plural(len(stopped), 'process', 'processes')}")


COMMANDS: list[click.Command] = [up, down]
