"""docs/reference.md is generated from the click commands and must stay current; every
command line that README.md and docs/ quote must name commands and options that exist."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import cli_doc

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = cli_doc.programs()
_SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _tokens(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an apostrophe in prose, an unclosed quote: words will do
        return text.split("#", 1)[0].split()


def _commands(text: str) -> Iterator[tuple[str, list[str]]]:
    """(program, the tokens after it) for each program named at the start of a shell
    command in ``text``: at its beginning or after ``|``, ``&&``, ``;``, past a ``$ ``
    prompt and ``VAR=value`` assignments."""
    tokens = _tokens(text.strip().removeprefix("$ "))
    at_start = True
    for i, token in enumerate(tokens):
        if token in {"|", "||", "&&", ";", "&", "$", "sudo", "exec"}:
            at_start = True
            continue
        if at_start and _ASSIGNMENT.match(token):
            continue
        name = token.rsplit("/", 1)[-1]
        if at_start and name in PROGRAMS:
            yield name, tokens[i + 1:]
        at_start = False


def quoted_command_lines(path: Path) -> Iterator[tuple[int, str, str, list[str]]]:
    """(line number, the quoted text, program, tokens) for each command line of a program
    in a code span or a fenced code block of a markdown file."""
    fenced = False
    pending: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if _FENCE.match(line):
            fenced, pending = not fenced, []
            continue
        if fenced:
            if line.rstrip().endswith("\\"):  # a command continued on the next line
                pending.append(line.rstrip()[:-1])
                continue
            text = " ".join([*pending, line])
            pending = []
            for program, tokens in _commands(text):
                yield number, text.strip(), program, tokens
            continue
        for span in _SPAN.findall(line):
            for program, tokens in _commands(span):
                yield number, span, program, tokens


def test_reference_is_current() -> None:
    assert cli_doc.DOC_PATH.read_text() == cli_doc.render(), (
        "docs/reference.md is out of date: run `python -m cli.cli_doc`")


def test_reference_lists_every_command_and_option() -> None:
    doc = cli_doc.render()
    for program, root in PROGRAMS.items():
        for node in cli_doc.walk(program, root):
            assert f"`{node.name}`" in doc
            for param in node.command.params:
                for flag in getattr(param, "opts", []):
                    if flag.startswith("-"):
                        assert flag in doc, (node.name, flag)
    for flag in ("--no-push", "--ignore-not-found", "--reason", "--data-dir",
                 "`LATTICE_NATS_URL`", "`nats://127.0.0.1:4222`"):
        assert flag in doc


def test_check_mode(tmp_path: Path) -> None:
    path = tmp_path / "reference.md"
    path.write_text("stale\n")
    assert cli_doc.main(["--check", str(path)]) == 1
    assert cli_doc.main([str(path)]) == 0
    assert cli_doc.main(["--check", str(path)]) == 0


def _root(program: str) -> cli_doc.Node:
    return next(cli_doc.walk(program, PROGRAMS[program]))


@pytest.mark.parametrize(("line", "problems"), [
    ("latticectl get deployments -o wide -w", []),
    ("latticectl get deploy|bs [NAME...] [-o wide|yaml]", []),
    ("latticectl status [--wait [--timeout SECONDS]]", []),
    ("latticectl apply -f x.yaml -m 'more LEDs' --no-push", []),
    ("latticectl --repo=. get hosts", []),
    ("latticectl delete deployment web --ignore-not-found --dry-run", []),
    ("latticectl get deployment --wide", ["`latticectl get deployments` has no option --wide"]),
    ("latticectl gte hosts", ["`latticectl` has no command gte"]),
    ("latticectl apply -f - --push", ["`latticectl apply` has no option --push"]),
    ("latticectl up | tee log --nonsense", []),
])
def test_check_command_line(line: str, problems: list[str]) -> None:
    ((program, tokens),) = list(_commands(line))
    assert cli_doc.check_command_line(tokens, _root(program)) == problems


def test_documented_commands_and_options_exist() -> None:
    problems, checked = [], 0
    for path in DOCS:
        for number, text, program, tokens in quoted_command_lines(path):
            checked += 1
            for problem in cli_doc.check_command_line(tokens, _root(program)):
                problems.append(f"{path.relative_to(ROOT)}:{number}: {problem} "
                                f"(in `{text}`)")
    assert checked > 50, "the docs quote command lines; the parser found too few"
    assert not problems, "\n".join(problems)
