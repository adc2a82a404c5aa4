"""The NATS flags of ``latticectl``, ``vinculum`` and ``lattice-host`` come from one
definition (:mod:`lattice.natsflags`), each with its own environment prefix; and a NATS
that is not there is one line and exit 2 from latticectl, through the one place that
turns errors into lines (:func:`cli.main.as_cli_error`)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli.cli_doc import programs
from cli.main import as_cli_error
from cli.settings import Settings
from gitsync.errors import InvalidManifestsError, PushError
from lattice.localnats import free_port
from lattice.natsflags import FLAGS, flag_names
from tests.cliutil import CAUSE, clean_env, run

PREFIX = {"latticectl": "LATTICECTL", "vinculum": "VINCULUM", "lattice-host": "LATTICE"}


def _nats_params(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params
            if isinstance(p, click.Option) and p.name and p.name.startswith("nats_")}


def test_the_three_programs_take_the_same_nats_flags() -> None:
    seen = {name: _nats_params(cmd) for name, cmd in programs().items()}
    assert set(seen) == set(PREFIX)
    for program, params in seen.items():
        assert [n for p in params.values() for n in p.opts] == flag_names(), program
        for flag in FLAGS:
            param = params[flag.dest]
            assert param.envvar == f"{PREFIX[program]}_{flag.env_suffix}", program
            assert param.help == flag.help
            if flag.is_file:
                assert isinstance(param.type, click.Path) and param.type.exists
                assert not param.type.dir_okay


@pytest.mark.parametrize("program", sorted(PREFIX))
def test_help_lists_every_nats_flag(program: str) -> None:
    result = CliRunner().invoke(programs()[program], ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    listed = set(re.findall(r"--[a-z][a-z-]*", result.output))
    assert set(flag_names()) <= listed, sorted(set(flag_names()) - listed)
    for flag in FLAGS:
        assert f"{PREFIX[program]}_{flag.env_suffix}" in result.output


@pytest.mark.parametrize("program", sorted(PREFIX))
def test_a_file_flag_names_a_file_that_exists(program: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.creds"
    # refused while parsing: the host never starts, the subcommand never runs
    then = [] if program == "lattice-host" else ["sync"]
    result = CliRunner().invoke(programs()[program], ["--creds", str(missing), *then])
    assert result.exit_code == 2
    assert "does not exist" in result.output and str(missing) in result.output


@pytest.mark.parametrize("program", sorted(PREFIX))
def test_a_tls_key_needs_a_certificate(program: str, tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("not really a key\n")
    args = ["--nats-url", f"nats://127.0.0.1:{free_port()}", "--tls-key", str(key)]
    if program == "latticectl":
        args += ["sync"]
    result = CliRunner().invoke(programs()[program], args)
    assert result.exit_code == 2, result.output
    assert "--nats-tls-key needs --nats-tls-cert" in result.output


@pytest.mark.parametrize("words", [["sync"], ["get", "actors"], ["trust", "list"]],
                         ids=" ".join)
def test_nats_that_is_not_there_is_one_line(words: list[str], tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = run(clean_env(tmp_path), "--nats-url", url, *words)
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert re.fullmatch(rf"Error: cannot reach NATS at {re.escape(url)} {CAUSE}; is the "
                        r"lattice up\? \(`latticectl up`, or pass --nats-url\)", line), line
    assert "Traceback" not in result.output


def test_errors_of_ours_become_their_message(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(nats_url="nats://h:1")
    pushed = as_cli_error(PushError("push refused by origin"), settings)
    assert (pushed.message, pushed.exit_code) == ("push refused by origin", 2)
    invalid = as_cli_error(InvalidManifestsError(["a.yaml:3: spec: required"]), settings)
    assert invalid.message == "1 error in the given manifests; nothing written"
    assert capsys.readouterr().err == "a.yaml:3: spec: required\n"
    unreadable = as_cli_error(FileNotFoundError(2, "No such file or directory", "x.wasm"),
                              settings)
    assert unreadable.message == "x.wasm: No such file or directory"
    other = as_cli_error(RuntimeError("boom"), None)
    assert other.message == "RuntimeError: boom (rerun with --debug for details)"
