"""``latticectl request``: one NATS request, its reply printed: how to talk to an actor.

A binding of ``wascc:messaging`` subscribes its actor to a subject (``SUBSCRIPTION``);
``latticectl request demo.echo hello`` sends ``hello`` there and prints what the actor
answered, so the demo of ``latticectl up`` needs no other NATS client.
"""

from __future__ import annotations

import asyncio
import sys

import click
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from cli.reach import connect_quickly
from cli.settings import CliError, Settings
from lattice.durations import parse_duration


@click.command("request")
@click.argument("subject")
@click.argument("body", required=False, default="")
@click.option("--timeout", default="2s", show_default=True,
              help="How long to wait for the reply (e.g. 500ms, 2s).")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 10_000),
              help="Send the request this many times, one reply per line.")
@click.pass_obj
def request_cmd(settings: Settings, subject: str, body: str, timeout: str, count: int) -> None:
    """Send BODY (or standard input with -) to SUBJECT and print the reply.

    \b
    Examples:
      latticectl request demo.echo 'hello lattice'
      latticectl request demo.counter --count 3
      echo '{"k": 1}' | latticectl request app.in -
    """
    try:
        seconds = parse_duration(timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timeout") from None
    payload = sys.stdin.buffer.read() if body == "-" else body.encode()
    url = settings.require_nats()

    async def run() -> list[bytes]:
        nc = await connect_quickly(settings.nats())
        try:
            return [(await nc.request(subject, payload, timeout=seconds)).data
                    for _ in range(count)]
        finally:
            await nc.close()

    try:
        replies = asyncio.run(run())
    except NoRespondersError:
        raise CliError(f"nothing on {url} listens on {subject} (is a binding with "
                       f"SUBSCRIPTION: {subject} in place? `latticectl get bindingsets`)"
                       ) from None
    except (NatsTimeoutError, TimeoutError):
        raise CliError(f"no reply on {subject} within {timeout}") from None
    for data in replies:
        click.echo(data.decode("utf-8", errors="replace"))


COMMANDS = [request_cmd]
