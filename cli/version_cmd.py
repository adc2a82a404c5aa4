"""``latticectl version``: the version of latticectl and of the agent that runs the lattice.

The agent's version comes from the agent itself when NATS is reachable (it answers a
nudge sent as a request: :func:`cli.agentcall.ask_agent`), else from the status branch,
whose summary records the version of the agent that wrote it (``agent_version``).
"""

from __future__ import annotations

import importlib.metadata

import click

from cli.settings import CliError, Settings
from lattice.durations import DURATION


def client_version() -> str:
    try:
        return importlib.metadata.version("vinculum")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def agent_version(settings: Settings, *, timeout: float) -> str:
    """``<version> (leader, over NATS)``, ``<version> (from status branch)``, or why it is
    not known."""
    from cli.agentcall import ask_agent

    why = []
    if settings.nats_url:
        try:
            answer = ask_agent(settings, reason="latticectl version", timeout=timeout)
        except (ConnectionError, TimeoutError, OSError) as exc:
            answer = None
            why.append(f"NATS unreachable: {exc}")
        if answer is not None:
            role = "leader" if answer.get("leader") else "follower"
            return f"{answer.get('version', 'unknown')} ({role}, over NATS)"
        if not why:
            why.append("no agent answered on NATS")
    from cli.view import open_view

    try:
        with open_view(settings) as view:
            report = view.status()
    except CliError as exc:
        report = None
        why.append(exc.message)
    if report is not None and report.summary.agent_version:
        return f"{report.summary.agent_version} (from status branch)"
    why.append("no agent version in the status branch")
    return f"unknown ({'; '.join(why)})"


@click.command("version")
@click.option("--client", is_flag=True, help="Only latticectl's version; ask no agent.")
@click.option("--timeout", type=DURATION, default="2s", show_default=True,
              help="How long to wait for the agent's answer over NATS.")
@click.pass_obj
def version_cmd(settings: Settings, client: bool, timeout: float) -> None:
    """Print the versions of latticectl and of the running agent.

    \b
    Examples:
      latticectl version
      latticectl version --client
    """
    click.echo(f"latticectl: {client_version()}")
    if not client:
        click.echo(f"agent:      {agent_version(settings, timeout=timeout)}")


COMMANDS: list[click.Command] = [version_cmd]
