"""``latticectl request``: one NATS request, its reply printed: how to talk to an actor.

A binding of ``wascc:messaging`` subscribes its actor to a subject (``SUBSCRIPTION``);
``latticectl request demo.echo hello`` sends ``hello`` there and prints what the actor
answered, so the demo of ``latticectl up`` needs no other NATS client. A reply that
carries a ``Nats-Service-Error`` header (the actor is not running, not bound, trapped)
is printed as ``error: ...`` on stderr and the exit status is 1.
"""

from __future__ import annotations

import asyncio
import sys

import click
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from cli.reach import connect_quickly
from cli.settings import CliError, Settings
from lattice.durations import DURATION

#: the header a failed request's reply carries (hostagent's and NATS micro's convention)
ERROR_HEADER = "Nats-Service-Error"


@click.command("request")
@click.argument("subject")
@click.argument("body", required=False, default="")
@click.option("--timeout", type=DURATION, default="2s", show_default=True,
              help="How long to wait for the reply (e.g. 500ms, 2s).")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 10_000),
              help="Send the request this many times, one reply per line.")
@click.pass_obj
def request_cmd(settings: Settings, subject: str, body: str, timeout: float, count: int
                ) -> None:
    """Send BODY (or standard input with -) to SUBJECT and print the reply.

    Exit status: 0 when every reply is a normal one; 1 when a reply carries an error
    (a Nats-Service-Error header: printed on stderr); 2 when no one answers in time.

    \b
    Examples:
      latticectl request demo.echo 'hello lattice'
      latticectl request demo.counter --count 3
      echo '{"k": 1}' | latticectl request app.in -
    """
    payload = sys.stdin.buffer.read() if body == "-" else body.encode()
    url = settings.require_nats()

    async def run() -> list[Msg]:
        nc = await connect_quickly(settings.nats())
        try:
            return [await nc.request(subject, payload, timeout=timeout) for _ in range(count)]
        finally:
            await nc.close()

    try:
        replies = asyncio.run(run())
    except NoRespondersError:
        raise CliError(f"nothing on {url} listens on {subject} (is a binding with "
                       f"SUBSCRIPTION: {subject} in place? `latticectl get bindingsets`)"
                       ) from None
    except (NatsTimeoutError, TimeoutError):
        raise CliError(f"no reply on {subject} within {timeout:g}s") from None
    failed = 0
    for reply in replies:
        error = service_error(reply)
        if error is None:
            click.echo(reply.data.decode("utf-8", errors="replace"))
        else:
            failed += 1
            click.echo(f"error: {subject}: {error}", err=True)
    if failed:
        raise click.exceptions.Exit(1)


def service_error(reply: Msg) -> str | None:
    """The error a reply carries in its ``Nats-Service-Error`` header (the NATS micro
    services convention our hosts follow), with its code when one is given; None for a
    normal reply. Pure."""
    headers = reply.headers or {}
    error = headers.get(ERROR_HEADER)
    if error is None:
        return None
    code = headers.get(f"{ERROR_HEADER}-Code")
    return f"{error} (code {code})" if code else error or "error (no message)"


COMMANDS = [request_cmd]
