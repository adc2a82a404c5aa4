"""``latticectl reconcile``: nudge the agent and wait until it has evaluated HEAD (Flux's
``flux reconcile``).

The nudge goes as a NATS request (:func:`cli.agentcall.ask_agent`), so a lattice with no
agent is known at once: exit 1 and say so. Then the status branch and the notes are read
until the agent's verdict on the followed branch's HEAD (:func:`cli.agentcall.
wait_for_revision`): Synced is exit 0; Degraded, Invalid or no verdict within
``--timeout`` is exit 1. :func:`report_wait` prints a wait's outcome for ``apply --wait``
and ``delete --wait`` too.
"""

from __future__ import annotations

import time

import click

from cli.agentcall import Waited, ask_agent, wait_for_revision
from cli.settings import CliError, Settings
from cli.view import open_view
from lattice.durations import DURATION


class NoAgentError(CliError):
    """No agent acknowledged a nudge: a failed wait (exit 1), not a usage error."""

    exit_code = 1


def no_agent(settings: Settings, timeout: float) -> NoAgentError:
    return NoAgentError(f"no agent answered on lattice {settings.lattice} at "
                     f"{settings.nats_url} within {timeout:g}s; is it running? "
                     "(`latticectl up`, or `vinculum --repo ...`)")


def report_wait(waited: Waited, timeout: float) -> None:
    """Print how a wait ended; exit 1 unless the revision is Synced."""
    sha = waited.revision[:12]
    if waited.done:
        click.echo(f"revision {sha} Synced")
        return
    if waited.failed:
        click.echo(f"error: revision {sha} {waited.phase}: {waited.message or '-'}", err=True)
    else:
        state = waited.phase or "not evaluated"
        click.echo(f"error: timed out after {timeout:g}s waiting for revision {sha} "
                   f"({state})", err=True)
    raise click.exceptions.Exit(1)


def head_of(settings: Settings) -> tuple[str, str]:
    """(branch, HEAD) of the branch the agent follows."""
    with open_view(settings) as view:
        branch = view.branch_of(view.status())
        head = view.head(branch)
    if head is None:
        raise CliError(f"branch {branch} has no commits in {settings.repo_path()}")
    return branch, head


@click.command("reconcile")
@click.option("--timeout", type=DURATION, default="60s", show_default=True,
              help="Give up (exit 1) when the agent has not answered or not evaluated HEAD "
                   "in this time.")
@click.option("--reason", default="latticectl reconcile", help="Recorded in the agent's log.")
@click.pass_obj
def reconcile_cmd(settings: Settings, timeout: float, reason: str) -> None:
    """Nudge the agent and wait until it has evaluated HEAD.

    Prints the agent that answered and the revision with its phase. Exit status: 0 when
    HEAD is Synced; 1 when no agent answers, HEAD is Degraded or Invalid, or the timeout
    passes; 2 on errors (NATS unreachable, no repository).

    \b
    Examples:
      latticectl reconcile
      git push && latticectl reconcile --timeout 2m
    """
    settings.require_nats()
    started = time.monotonic()
    branch, head = head_of(settings)
    answer = ask_agent(settings, reason=reason, timeout=min(timeout, 5.0), revision=head)
    if answer is None:
        raise no_agent(settings, min(timeout, 5.0))
    role = "leader" if answer.get("leader") else "follower"
    click.echo(f"agent {answer.get('version', '?')} ({role}) nudged; waiting for "
               f"{branch} at {head[:12]}")
    left = max(0.0, timeout - (time.monotonic() - started))
    report_wait(wait_for_revision(settings, head, timeout=left), timeout)


COMMANDS: list[click.Command] = [reconcile_cmd]
