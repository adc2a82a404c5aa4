"""Render docs/reference.md from the click command trees of the three programs.

``latticectl`` (:data:`cli.main.cli`), ``vinculum`` (:data:`reconciler.main.main`) and
``lattice-host`` (:data:`hostagent.main.main`) are walked as click sees them: every command
and subcommand, its usage line, its aliases, and one row per option with its flags, the
environment variable it reads, its default and its help. The document cannot list an
option the code does not have; ``tests/test_cli_doc.py`` regenerates it and compares, and
checks that every ``latticectl ...`` command line quoted in README.md and docs/ names a
command and options that exist (:func:`check_command_line`).

Pure apart from :func:`main`, which writes the file through :func:`lattice.docgen.main`:

    python -m cli.cli_doc            # rewrite docs/reference.md
    python -m cli.cli_doc --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from lattice import docgen

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
NONE = ""
# click 8.2+ marks "no default given" with a sentinel; older clicks use None
_UNSET = getattr(click.core, "UNSET", None)


def programs() -> dict[str, click.Command]:
    """The three entry points of pyproject.toml's ``[project.scripts]``, by program name."""
    from cli.main import cli
    from hostagent.main import main as host_main
    from reconciler.main import main as agent_main

    # cli.main registers its commands on import; the group is complete here
    return {"latticectl": cli, "vinculum": agent_main, "lattice-host": host_main}


@dataclass(frozen=True)
class Node:
    """One command of a tree, with the click context it would run in."""

    path: tuple[str, ...]
    command: click.Command
    ctx: click.Context

    @property
    def name(self) -> str:
        return " ".join(self.path)


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    return command.context_class(command, info_name=name, parent=parent,
                                 **command.context_settings)


def walk(program: str, root: click.Command) -> Iterator[Node]:
    """Every command of the tree, depth first, subcommands in the order click lists them.
    Hidden commands are left out. Pure."""
    stack = [Node((program,), root, _context(root, program, None))]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node.command, click.Group):
            children = []
            for name in node.command.list_commands(node.ctx):
                sub = node.command.get_command(node.ctx, name)
                if sub is None or sub.hidden:
                    continue
                children.append(Node((*node.path, name), sub, _context(sub, name, node.ctx)))
            stack.extend(reversed(children))


def aliases(group: click.Command) -> dict[str, list[str]]:
    """Subcommand name -> the other names it answers to (``get deploy``...). Pure."""
    found: dict[str, list[str]] = {}
    for alias, target in sorted(getattr(group, "aliases", {}).items()):
        found.setdefault(target, []).append(alias)
    return found


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _envvar(param: click.Parameter) -> str:
    envvar = param.envvar
    if not envvar:
        return NONE
    names = [envvar] if isinstance(envvar, str) else list(envvar)
    return ", ".join(f"`{n}`" for n in names)


def _default(param: click.Option, ctx: click.Context) -> str:
    if isinstance(param.show_default, str):
        return _cell(param.show_default)
    if param.is_flag and not param.secondary_opts:
        return NONE  # a flag's default is "off"
    value = param.get_default(ctx, call=False)
    if callable(value):
        return "(computed)"
    if value is None or value is _UNSET or value == () or value == []:
        return NONE
    if isinstance(value, bool) and param.secondary_opts:
        return f"`{(param.opts if value else param.secondary_opts)[0]}`"
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`" if str(value) != "" else '`""`'


def _option_rows(node: Node) -> list[str]:
    rows = []
    for param in node.command.get_params(node.ctx):
        if not isinstance(param, click.Option) or param.hidden:
            continue
        record = param.get_help_record(node.ctx)
        flags = record[0] if record else ", ".join(param.opts)
        help_text = param.help or ""
        if param.required:
            help_text = f"{help_text} (required)".strip()
        if param.multiple and "repeat" not in help_text.lower():
            help_text = f"{help_text} (repeatable)".strip()
        rows.append(f"| `{_cell(flags)}` | {_envvar(param)} | {_default(param, node.ctx)} "
                    f"| {_cell(help_text)} |")
    return rows


def _summary(command: click.Command) -> str:
    """The first paragraph of the command's help, as one line."""
    text = command.help or command.short_help or ""
    first = text.strip().split("\n\n", 1)[0]
    return " ".join(first.replace("\b", "").split())


def _usage(node: Node) -> str:
    pieces = node.command.collect_usage_pieces(node.ctx)
    return " ".join([node.name, *pieces])


def _anchor(name: str) -> str:
    return name.replace(" ", "-")


def render_node(node: Node, parent: click.Command | None) -> list[str]:
    """The section of one command: heading, summary, usage, aliases, option table. Pure."""
    lines = [f"{'#' * min(len(node.path) + 1, 4)} `{node.name}`", ""]
    summary = _summary(node.command)
    if summary:
        lines += [summary, ""]
    lines += ["```", _usage(node), "```", ""]
    if parent is not None:
        other = aliases(parent).get(node.path[-1], [])
        if other:
            lines += ["Also answers to: " + ", ".join(f"`{a}`" for a in other) + ".", ""]
    if isinstance(node.command, click.Group):
        subs = [n for n in node.command.list_commands(node.ctx)
                if (c := node.command.get_command(node.ctx, n)) is not None and not c.hidden]
        lines += ["Subcommands: " + ", ".join(
            f"[`{n}`](#{_anchor(node.name + ' ' + n)})" for n in subs) + ".", ""]
    lines += ["| Option | Environment | Default | Description |", "|---|---|---|---|",
              *_option_rows(node), ""]
    return lines


def render() -> str:
    """The whole of docs/reference.md. Pure: depends only on the click trees."""
    out = [
        "# Command reference",
        "",
        "<!-- Generated by `python -m cli.cli_doc` from the click commands; do not edit. -->",
        "",
        "Every command of the three programs, with every option: the flags, the environment",
        "variable that sets the option when the flag is not given, its default and its help.",
        "The narrative pages explain them: [cli.md](cli.md) for `latticectl`,",
        "[agent.md](agent.md) for `vinculum`, [actors.md](actors.md) and",
        "[security.md](security.md) for `lattice-host`. An empty default means none (the",
        "option is unset, or a flag is off).",
        "",
    ]
    trees = programs()
    out += [f"- [`{name}`](#{_anchor(name)})" for name in trees] + [""]
    for program, root in trees.items():
        parents: dict[tuple[str, ...], click.Command] = {}
        for node in walk(program, root):
            parents[node.path] = node.command
            out += render_node(node, parents.get(node.path[:-1]))
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


# -- checking command lines quoted in the docs --------------------------------------------

_SEPARATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1", "\\"}


def _option(node: Node, flag: str) -> click.Option | None:
    for param in node.command.get_params(node.ctx):
        if isinstance(param, click.Option) and flag in (*param.opts, *param.secondary_opts):
            return param
    return None


def _subcommand(node: Node, word: str) -> Node | None:
    assert isinstance(node.command, click.Group)
    sub = node.command.get_command(node.ctx, word)
    if sub is None:
        return None
    name = sub.name or word
    return Node((*node.path, name), sub, _context(sub, name, node.ctx))


def _is_placeholder(word: str) -> bool:
    """``NAME``, ``<kind>``, ``...``, ``$X``: a stand-in, not a command name."""
    return (word.isupper() or word.startswith(("<", "{", "$", "...")) or "..." in word
            or word in {"COMMAND", "SUBCOMMAND"})


def check_command_line(tokens: Sequence[str], root: Node) -> list[str]:
    """Problems with one command line (``tokens`` after the program name), an empty list
    when every command and option it names exists. Conservative: it checks subcommand names
    while the command is a group, and every ``-x``/``--xx`` option against the command it
    follows; synopsis forms are understood (``[--wait [--timeout S]]``, ``hosts|host``);
    it stops at a pipe, ``&&``, ``;``, a redirection or ``--``. Pure."""
    problems: list[str] = []
    node = root
    skip_value = False
    for raw in tokens:
        if raw in _SEPARATORS or raw.startswith((">", "2>")) or raw == "--":
            break
        word = raw.strip("[]()\"'`,")
        if skip_value:
            skip_value = False
            if not word.startswith("-") or word == "-":
                continue
        if not word:
            continue
        if word.startswith("-") and word != "-":
            flag = word.split("=", 1)[0]
            param = _option(node, flag)
            if param is None and not flag.startswith("--") and len(flag) > 2:
                # -wo wide: a cluster of short flags, the last may take a value
                shorts = [_option(node, f"-{c}") for c in flag[1:]]
                if all(p is not None for p in shorts):
                    param = shorts[-1]
            if param is None:
                problems.append(f"`{node.name}` has no option {flag}")
                continue
            skip_value = "=" not in word and not param.is_flag and not param.count
            continue
        if isinstance(node.command, click.Group):
            if _is_placeholder(word):
                break
            alternatives = word.split("|")
            found = [_subcommand(node, alt) for alt in alternatives]
            missing = [alt for alt, sub in zip(alternatives, found, strict=True) if sub is None]
            if missing:
                problems.append(f"`{node.name}` has no command {' or '.join(missing)}")
                break
            first = found[0]
            assert first is not None
            node = first
        # a word after a command that is not a group is an argument (or its value)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Write docs/reference.md, or with ``--check`` report whether it is current."""
    return docgen.main(argv, default=DOC_PATH, render=lambda _current: render(),
                       module="cli.cli_doc")


if __name__ == "__main__":
    sys.exit(main())
