"""``latticectl completion bash|zsh|fish``: the shell completion script, from click.

Click completes commands, options and the names the commands offer (deployments and
binding sets in the repository) when the shell calls ``latticectl`` with
``_LATTICECTL_COMPLETE=<shell>_complete``; this command prints the script that does so.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_cmd(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    \b
    Examples:
      source <(latticectl completion bash)             # bash, this shell
      latticectl completion zsh > "${fpath[1]}/_latticectl"
      latticectl completion fish > ~/.config/fish/completions/latticectl.fish
    """
    root = ctx.find_root()
    cls = get_completion_class(shell)
    assert cls is not None  # every name of SHELLS is one of click's
    comp = cls(root.command, {}, "latticectl", "_LATTICECTL_COMPLETE")
    click.echo(comp.source(), nl=False)


COMMANDS: list[click.Command] = [completion_cmd]
