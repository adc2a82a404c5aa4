"""Every command and subcommand (click's command tree, walked) has --help with an
Examples: block; shell completion is click's own and knows entity names from the status
branch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cli.main import cli
from tests.cliutil import clean_env, gitops_repo, report, run, write_status


def command_paths(cmd: click.Command = cli, path: tuple[str, ...] = ()
                  ) -> list[tuple[str, ...]]:
    """Every command and subcommand of latticectl, by the words that name it (click's
    command tree, so a new command is checked without being listed here)."""
    out = [path]
    if isinstance(cmd, click.Group):  # list/get_command: latticectl loads commands lazily
        ctx = click.Context(cmd)
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, name
            out += command_paths(sub, (*path, name))
    return out


def examples_block(text: str) -> list[str]:
    """The indented lines under ``Examples:`` in a --help text."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Examples:")
    block = []
    for line in lines[start + 1:]:
        if not line.startswith("  ") or not line.strip():
            break
        block.append(line.strip())
    return block


def test_the_tree_is_walked() -> None:
    paths = command_paths()
    assert len(paths) > 20
    for expected in [(), ("apply",), ("trust", "reset"), ("describe", "bindingset"),
                     ("get", "hosts"), ("down",)]:
        assert expected in paths


@pytest.mark.parametrize("words", command_paths(), ids=lambda w: " ".join(w) or "latticectl")
def test_help_has_examples(words: tuple[str, ...], tmp_path: Path) -> None:
    result = run(clean_env(tmp_path), *words, "--help")
    assert result.exit_code == 0, result.output
    assert any(line.strip() == "Examples:" for line in result.stdout.splitlines()), \
        result.stdout
    block = examples_block(result.stdout)
    named = " ".join(("latticectl", *words))
    assert any(named in line for line in block), (named, block)


def complete(env: dict[str, str], line: str) -> list[str]:
    words = line.split(" ")
    out = subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()"],
        env={**os.environ, **env, "_LATTICECTL_COMPLETE": "bash_complete",
             "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)},
        capture_output=True, text=True, timeout=30, check=True)
    return [w.split(",", 1)[1] for w in out.stdout.splitlines() if w]


def test_completion_of_commands_and_names(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    repo = gitops_repo(tmp_path)
    write_status(repo, tmp_path / "agent", report(repo.head.commit.hexsha))
    root = str(repo.working_tree_dir)
    assert "deployments" in complete(env, "latticectl get d")
    assert complete(env, f"latticectl --repo {root} get deployment am") == ["amazing-deployment"]
    assert complete(env, f"latticectl --repo {root} describe bs ") == ["amazing-bindings"]
    assert complete(env, f"latticectl --repo {tmp_path} get deploy ") == []  # no repo: none


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`latticectl ... | head`: the reader is gone; exit 0 and no traceback or error."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "from cli.main import main; main()", "get", "--help"],
            stdout=write_end, stderr=subprocess.PIPE, timeout=60,
            env={**os.environ, "LATTICECTL_CONFIG": str(tmp_path / "none.yaml")})
    finally:
        os.close(write_end)
    assert b"BrokenPipe" not in proc.stderr and b"Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0
