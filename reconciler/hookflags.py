"""The ``vinculum`` flags of the forges' webhooks and of the alerts, gathered into one
:class:`Hooks` value (as :func:`lattice.natsflags.nats_options` gathers the NATS flags).

Secrets come from a file or the environment, never from a flag's value (a command line is
readable by every user of the machine): ``--webhook-secret-file`` or
``VINCULUM_WEBHOOK_SECRET``, ``--alert-secret-file`` or ``VINCULUM_ALERT_SECRET``. The
command (:mod:`reconciler.main`) puts :class:`Hooks`' two halves into
:class:`~reconciler.config.AgentConfig`; :mod:`reconciler.webhook` and
:mod:`reconciler.alerts` do the work.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from reconciler.alerts import AlertConfig
from reconciler.webhook import WebhookConfig, split_addr

#: the largest secret file read (a secret is a few dozen bytes)
MAX_SECRET = 4096


@dataclass(frozen=True)
class Hooks:
    webhook: WebhookConfig
    alerts: AlertConfig


def _secret(path: str | None, env: str, flag: str) -> bytes:
    """The secret in ``path`` (its last newline stripped) or else in ``$env``; b"" if
    neither gives one."""
    if path is None:
        return os.environ.get(env, "").encode()
    p = Path(path)
    if p.stat().st_size > MAX_SECRET:
        raise click.BadParameter(f"{path}: larger than {MAX_SECRET} bytes; is it a secret?",
                                 param_hint=flag)
    return p.read_bytes().rstrip(b"\r\n")


def _addr(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            split_addr(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


_FILE = click.Path(exists=True, dir_okay=False)
OPTIONS = [
    click.option("--webhook-addr", envvar="VINCULUM_WEBHOOK_ADDR", callback=_addr,
                 metavar="HOST:PORT",
                 help="Receive GitHub, GitLab and Gitea push webhooks on "
                      "http://HOST:PORT/webhook: a push to the branch makes the agent "
                      "fetch now (off by default; needs a webhook secret)."),
    click.option("--webhook-secret-file", type=_FILE,
                 help="File holding the webhooks' secret (or $VINCULUM_WEBHOOK_SECRET)."),
    click.option("--alert-url", multiple=True, metavar="URL",
                 help="POST a JSON event here when a deployment or the revision becomes "
                      "Degraded or Invalid, or Synced again (Slack-compatible; "
                      "repeatable)."),
    click.option("--alert-secret-file", type=_FILE,
                 help="Sign alerts with this file's secret: X-Vinculum-Signature: "
                      "sha256=<HMAC> (or $VINCULUM_ALERT_SECRET)."),
]


def hook_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """A decorator adding the webhook and alert flags to a click command, which receives
    them as one :class:`Hooks` (keyword ``hooks``)."""

    @functools.wraps(f)
    def gathered(*args: Any, webhook_addr: str | None, webhook_secret_file: str | None,
                 alert_url: tuple[str, ...], alert_secret_file: str | None,
                 **kwargs: Any) -> Any:
        secret = _secret(webhook_secret_file, "VINCULUM_WEBHOOK_SECRET",
                         "--webhook-secret-file")
        if webhook_addr and not secret:
            raise click.UsageError("--webhook-addr needs a secret: --webhook-secret-file "
                                   "FILE or $VINCULUM_WEBHOOK_SECRET (not empty)")
        for url in alert_url:
            if not url.startswith(("http://", "https://")):
                raise click.BadParameter(f"{url!r} is not an http(s) URL",
                                         param_hint="--alert-url")
        hooks = Hooks(WebhookConfig(addr=webhook_addr, secret=secret), AlertConfig(
            urls=alert_url, secret=_secret(alert_secret_file, "VINCULUM_ALERT_SECRET",
                                           "--alert-secret-file")))
        return f(*args, hooks=hooks, **kwargs)

    command: Callable[..., Any] = gathered
    for option in reversed(OPTIONS):
        command = option(command)
    return command
