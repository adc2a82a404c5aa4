"""``latticectl config``: the contexts of ``~/.config/latticectl/config.yaml``, kubectl's way.

``get-contexts`` lists them (``*`` marks the current one), ``current-context`` prints its
name, ``use-context NAME`` makes NAME current (rewriting the file; its comments are not
kept). The file's shape is :mod:`cli.settings`'; a wrong shape is one line naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import yaml

from cli.output import table
from cli.settings import CliError, config_path, load_context


def _document(path: Path) -> dict[str, Any]:
    """The config file as a mapping, checked the way latticectl reads it; empty when the
    file does not exist."""
    if not path.is_file():
        return {}
    load_context(None)  # the file's shape: a CliError naming file and field when wrong
    doc = yaml.safe_load(path.read_text()) or {}
    assert isinstance(doc, dict)
    return doc


def _contexts(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(k): (v or {}) for k, v in (doc.get("contexts") or {}).items()}


@click.group("config")
def config_group() -> None:
    """Show and switch the contexts of the latticectl config file.

    \b
    Examples:
      latticectl config get-contexts
      latticectl config use-context lab
      latticectl config current-context
    """


@config_group.command("get-contexts")
def get_contexts() -> None:
    """List the contexts; * marks the current one.

    \b
    Examples:
      latticectl config get-contexts
    """
    path = config_path()
    doc = _document(path)
    contexts = _contexts(doc)
    if not contexts:
        click.echo(f"no contexts in {path}", err=True)
        return
    current = doc.get("current-context")
    rows = [["*" if name == current else "", name, ctx.get("repo") or "",
             ctx.get("nats-url") or "", ctx.get("lattice") or ""]
            for name, ctx in sorted(contexts.items())]
    for line in table(("CURRENT", "NAME", "REPO", "NATS-URL", "LATTICE"), rows):
        click.echo(line)


@config_group.command("current-context")
def current_context() -> None:
    """Print the name of the current context (exit 1 when none is set).

    \b
    Examples:
      latticectl config current-context
    """
    current = _document(config_path()).get("current-context")
    if not current:
        click.echo(f"error: current-context is not set in {config_path()}", err=True)
        raise click.exceptions.Exit(1)
    click.echo(str(current))


@config_group.command("use-context")
@click.argument("name")
def use_context(name: str) -> None:
    """Make NAME the current context (it must be one of the file's contexts).

    \b
    Examples:
      latticectl config use-context lab
    """
    path = config_path()
    doc = _document(path)
    contexts = _contexts(doc)
    if name not in contexts:
        raise CliError(f"no context {name!r} in {path}; known: "
                       f"{', '.join(sorted(contexts)) or 'none'}")
    doc["current-context"] = name
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)  # a reader never sees half a file
    click.echo(f'Switched to context "{name}".')


COMMANDS: list[click.Command] = [config_group]
