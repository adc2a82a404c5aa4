"""The NATS connection flags of all three programs, written once.

``latticectl`` (:mod:`cli.main`), ``vinculum`` (:mod:`reconciler.main`) and
``lattice-host`` (:mod:`hostagent.main`) reach NATS the same way, so they take the same
flags with the same help and types; only the environment prefix differs (``LATTICECTL``,
``VINCULUM``, ``LATTICE``: ``--nats-creds`` reads ``<PREFIX>_NATS_CREDS``, ``--js-domain``
``<PREFIX>_JS_DOMAIN``).
:func:`nats_options` adds the flags to a click command and hands the command one
:class:`NatsFlags` value (keyword ``nats``) instead of eight parameters;
:meth:`NatsFlags.options` turns it into the :class:`lattice.natsutil.NatsOptions` that
:func:`lattice.natsutil.connect` takes.

Each flag has a long ``--nats-...`` name and a short one (``--creds``, ``--user``,
``--tls-ca``...): latticectl documented the first, the agent and the host the second, and
both keep working everywhere. Files must exist when the command starts.

    @click.command()
    @nats_options(env_prefix="VINCULUM")
    def main(nats: NatsFlags) -> None:
        opts = nats.options(name="vinculum")
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # natsutil imports nats-py (~0.3 s): `latticectl --help` must not wait
    from lattice.natsutil import NatsOptions

#: Where a program without a configured URL looks for NATS.
DEFAULT_URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class NatsFlags:
    """The NATS flags as given (flag or environment); ``None`` where neither was."""

    url: str | None = None
    creds: str | None = None
    nkey_seed: str | None = None
    user: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    js_domain: str | None = None

    def options(self, *, name: str, url: str | None = None) -> NatsOptions:
        """How to reach NATS: ``url`` (else the flag's, else :data:`DEFAULT_URL`) with the
        credentials and TLS files of the flags; ``name`` is the connection's name. Pure."""
        from lattice.natsutil import NatsOptions

        return NatsOptions(url=url or self.url or DEFAULT_URL, name=name,
                           creds_file=self.creds, nkey_seed_file=self.nkey_seed,
                           user=self.user, password=self.password, tls_ca=self.tls_ca,
                           tls_cert=self.tls_cert, tls_key=self.tls_key,
                           js_domain=self.js_domain or None)


@dataclass(frozen=True)
class _Flag:
    field: str                 # of NatsFlags
    names: tuple[str, ...]     # long, then short
    help: str
    is_file: bool = False
    env: str = ""              # the environment suffix, if not NATS_<FIELD>

    @property
    def dest(self) -> str:
        return f"nats_{self.field}"

    @property
    def env_suffix(self) -> str:
        return self.env or self.dest.upper()


_FILE = click.Path(exists=True, dir_okay=False)

#: The flags, in the order --help lists them.
FLAGS: tuple[_Flag, ...] = (
    _Flag("url", ("--nats-url",), "NATS server URL."),
    _Flag("creds", ("--nats-creds", "--creds"),
          "NATS credentials file (user JWT and nkey seed).", is_file=True),
    _Flag("nkey_seed", ("--nats-nkey-seed", "--nkey-seed"), "NATS nkey seed file.",
          is_file=True),
    _Flag("user", ("--nats-user", "--user"), "NATS user (with --nats-password)."),
    _Flag("password", ("--nats-password", "--password"),
          "NATS password; prefer the environment variable (a flag shows in `ps`)."),
    _Flag("tls_ca", ("--nats-tls-ca", "--tls-ca"),
          "CA bundle to verify the NATS server (tls://).", is_file=True),
    _Flag("tls_cert", ("--nats-tls-cert", "--tls-cert"),
          "Client certificate for NATS TLS.", is_file=True),
    _Flag("tls_key", ("--nats-tls-key", "--tls-key"),
          "Client key for --nats-tls-cert.", is_file=True),
    _Flag("js_domain", ("--js-domain",),
          "JetStream domain of the lattice's hub (`latticectl up` runs it as "
          "`vinculum`); needed on a leaf node, where the plain JetStream API does not "
          "reach the hub.", env="JS_DOMAIN"),
)


def flag_names() -> list[str]:
    """Every name of every NATS flag, long and short, as --help shows them. Pure."""
    return [n for f in FLAGS for n in f.names]


def nats_options(*, env_prefix: str, default_url: str | None = DEFAULT_URL
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding the NATS flags (environment ``<env_prefix>_NATS_...``) to a
    click command; the command receives them as one :class:`NatsFlags` (keyword ``nats``).
    ``default_url``: the URL when neither flag nor environment gives one (``None``:
    the command resolves it itself, as latticectl does from its context)."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def gathered(*args: Any, **kwargs: Any) -> Any:
            values = {flag.field: kwargs.pop(flag.dest) for flag in FLAGS}
            flags = NatsFlags(**values)
            if flags.tls_key and not flags.tls_cert:
                raise click.UsageError("--nats-tls-key needs --nats-tls-cert")
            return f(*args, nats=flags, **kwargs)

        command: Callable[..., Any] = gathered
        for flag in reversed(FLAGS):
            default = default_url if flag.field == "url" else None
            option = click.option(
                *flag.names, flag.dest, envvar=f"{env_prefix}_{flag.env_suffix}",
                type=_FILE if flag.is_file else None, default=default,
                show_default=default is not None, show_envvar=True, help=flag.help)
            command = option(command)
        return command

    return decorate
