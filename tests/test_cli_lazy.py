"""latticectl loads a command's module only when that command runs: ``--help`` and
``--version`` import no command module and not nats-py (issue 17: ≤ 100 ms; see
bench/bench_cli_startup.py), and the static table that ``--help`` lists stays true to the
modules."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cli.main import COMMAND_TABLE, cli, package_version

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import sys
from click.testing import CliRunner
from cli.main import cli
res = CliRunner().invoke(cli, [{arg!r}])
assert res.exit_code == 0, res.output
print(" ".join(sorted(m for m in sys.modules
                      if m.startswith(("nats", "cli.", "git", "yaml", "pydantic")))))
"""


@pytest.mark.parametrize("arg", ["--help", "--version"])
def test_help_and_version_import_no_command(arg: str) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE.format(arg=arg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["cli.main", "cli.settings"], out.stdout


def test_the_table_names_every_command_of_every_module() -> None:
    modules = {module for module, _ in COMMAND_TABLE.values()
               if importlib.util.find_spec(module) is not None}
    assert len(modules) >= 18
    for module in modules:
        names = {c.name for c in importlib.import_module(module).COMMANDS}
        assert names == {n for n, (m, _) in COMMAND_TABLE.items() if m == module}, module
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
        assert not command.hidden


def test_help_lists_the_table_and_unknown_commands_are_usage_errors() -> None:
    from click.testing import CliRunner

    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    listed = res.output.split("Commands:")[1]
    assert [line.split()[0] for line in listed.splitlines()
            if line.startswith("  ") and not line.startswith("   ")] == cli.list_commands(
        click.Context(cli))
    bad = CliRunner().invoke(cli, ["rollbak"])
    assert bad.exit_code == 2 and "No such command 'rollbak'" in bad.output


def test_version_is_the_installed_one() -> None:
    import importlib.metadata

    assert package_version() == importlib.metadata.version("vinculum")
    from click.testing import CliRunner

    res = CliRunner().invoke(cli, ["--version"], prog_name="latticectl")
    assert res.output == f"latticectl, version {package_version()}\n"
