"""``latticectl host creds|revoke``: hosts join and leave a secured lattice on purpose.

Works on the keys a secured ``latticectl up`` keeps under ``<state-dir>/keys``
(:class:`lattice.auth.store.AuthStore`). ``creds`` issues a host credential (and the
application credential its ``wascc:messaging`` provider connects with) for a machine that
joins from elsewhere, and prints the command that machine runs (with ``--js-domain`` when
the lattice has one, as every ``up`` lattice does: a host on a leaf node reaches the hub's
JetStream, so gantry's actors, only by its domain). ``revoke`` adds the host's
user key to the account's revocations and pushes the new account JWT to the running
server with the system account: the server closes that host's connection at once and
refuses it from then on; the resolver stores the JWT, so a restart keeps the revocation.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from pathlib import Path

import click

from cli.localstack import StackState
from cli.settings import CliError, Settings, load_up_state
from hostagent.labels import LabelError, parse_label
from lattice.auth.keys import AuthKeyError, host_id_of, user_key_of_host
from lattice.auth.server import push_account_jwt
from lattice.auth.store import AuthStore
from lattice.errors import NatsServerError


def _store(settings: Settings) -> AuthStore:
    store = AuthStore(settings.state_dir, settings.lattice)
    if not store.exists:
        raise CliError(f"no lattice keys in {store.keys_dir}: a secured `latticectl up` "
                       "makes them (use the same --state-dir)")
    return store


def js_domain(settings: Settings) -> str | None:
    """The lattice's JetStream domain: ``--js-domain``, else what the running ``up`` of
    this state dir recorded (whichever URL latticectl was given: a host joining through a
    leaf node is told the hub's domain)."""
    found = settings.nats_flags.js_domain or load_up_state(settings.state_dir).get("js_domain")
    return found if isinstance(found, str) and found else None


def apps_path(path: Path) -> Path:
    """Where the application credential goes beside a host's: ``pi.creds`` ->
    ``pi.apps.creds``. Pure."""
    return path.with_name(f"{path.stem}.apps{path.suffix or '.creds'}")


@click.group("host")
def host() -> None:
    """Credentials for hosts of a secured lattice: issue and revoke.

    \b
    Examples:
      latticectl host creds pi -o pi.creds --label zone=edge
      latticectl host revoke pi
    """


@host.command("creds")
@click.argument("name")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="A label for the host, repeatable (goes into the join command).")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the host's .creds file (mode 0600).")
@click.pass_obj
def creds(settings: Settings, name: str, labels: tuple[str, ...], output: str) -> None:
    """Write credentials for host NAME to join from another machine.

    The host may receive only its own commands and publish events only in its own name;
    its id is fixed by the credential. A second file, NAME's application credential, is
    written beside it (``pi.creds`` -> ``pi.apps.creds``).

    \b
    Examples:
      latticectl host creds pi -o pi.creds --label zone=edge
      latticectl host creds lab-2 -o /tmp/lab-2.creds
    """
    for label in labels:
        try:
            parse_label(label)
        except LabelError as exc:
            raise click.BadParameter(str(exc), param_hint="--label") from None
    store = _store(settings)
    path = Path(output)
    issued = store.issue("host", name, path=path)
    apps = store.issue("apps", f"{name}-apps", path=apps_path(path))
    click.echo(f"wrote {issued.path} (host {name}, id {issued.host_id}) and {apps.path}")
    # a server on every address is reached by this machine's name, which only you know
    url = (settings.nats_url or "nats://0.0.0.0:4222").replace("//0.0.0.0:", "//LATTICE-HOST:")
    cmd = ["lattice-host", "--nats-url", url, "--lattice", settings.lattice, "--name", name,
           "--creds", path.name, "--apps-creds", apps.path.name,
           *[a for label in labels for a in ("--label", label)]]
    domain = js_domain(settings)
    if domain:  # the only way a host on a leaf node reaches the hub's gantry
        cmd[3:3] = ["--js-domain", domain]
    click.echo("on the new machine, with both files copied there:")
    click.echo("  pip install vinculum    # or, in a checkout: bash scripts/install.sh")
    click.echo(f"  {shlex.join(cmd)}")


@host.command("revoke")
@click.argument("host_ref", metavar="NAME|ID")
@click.pass_obj
def revoke(settings: Settings, host_ref: str) -> None:
    """Revoke a host's credentials: its connection is closed and refused from now on.

    NAME is a name given to `host creds` or to `up`'s hosts (host-0, ...); ID is the
    host id (N...) that `get hosts -o wide` shows. The agent replaces the host's work
    as for a lost host.

    \b
    Examples:
      latticectl host revoke pi
      latticectl host revoke NCZ3...    # by host id
    """
    store = _store(settings)
    user_key = _user_key(store, host_ref)
    token = store.revoke(user_key, at=int(time.time()))
    state = StackState.load(settings.state_dir)
    host_id = host_id_of(user_key)
    if state is None or not state.secure:
        click.echo(f"revoked host {host_id} in {store.keys_dir}; no running secured lattice "
                   "here: the next `latticectl up` starts with it revoked")
        return
    try:
        asyncio.run(push_account_jwt(state.nats_url, str(store.system_creds), token))
    except (NatsServerError, ConnectionError, TimeoutError, OSError) as exc:
        raise CliError(f"revoked in {store.keys_dir}, but the server at {state.nats_url} "
                       f"did not take it: {exc}") from None
    click.echo(f"revoked host {host_id} ({host_ref}): its connection is closed and refused")


def _user_key(store: AuthStore, ref: str) -> str:
    known = store.hosts()
    if ref in known:
        return known[ref]
    try:
        if ref.startswith("N"):
            key = user_key_of_host(ref)
        elif ref.startswith("U"):
            key = ref
            host_id_of(key)
        else:
            raise AuthKeyError(ref)
    except AuthKeyError:
        names = ", ".join(sorted(known)) or "none"
        raise CliError(f"no host {ref!r}: not a name issued here ({names}) nor a host id "
                       "(N...)") from None
    return key


COMMANDS: list[click.Command] = [host]
