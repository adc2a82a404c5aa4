"""``latticectl config`` (contexts, kubectl's way) and ``completion``: real files, real
click, the script a shell would source."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cliutil import clean_env, run

CONFIG = """current-context: lab
contexts:
  lab:
    repo: /srv/gitops
    nats-url: tls://nats.lab:4222
  home:
    repo: /home/me/ops
    lattice: home
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "config.yaml").write_text(CONFIG)
    return clean_env(tmp_path) | {"LATTICECTL_CONFIG": str(tmp_path / "config.yaml")}


def test_get_contexts_marks_the_current_one(env: dict[str, str]) -> None:
    res = run(env, "config", "get-contexts")
    assert res.exit_code == 0, res.output
    assert [line.split() for line in res.stdout.splitlines()] == [
        ["CURRENT", "NAME", "REPO", "NATS-URL", "LATTICE"],
        ["home", "/home/me/ops", "home"],
        ["*", "lab", "/srv/gitops", "tls://nats.lab:4222"]]


def test_use_context_switches_and_the_settings_follow(env: dict[str, str]) -> None:
    assert run(env, "config", "current-context").stdout == "lab\n"
    res = run(env, "config", "use-context", "home")
    assert (res.exit_code, res.stdout) == (0, 'Switched to context "home".\n')
    assert run(env, "config", "current-context").stdout == "home\n"
    doc = yaml.safe_load(Path(env["LATTICECTL_CONFIG"]).read_text())
    assert doc["contexts"]["lab"]["nats-url"] == "tls://nats.lab:4222"  # the rest is kept
    # what every other command now reads: the home context's repository
    history = run(env, "history")
    assert history.exit_code == 2 and "/home/me/ops" in history.output


def test_unknown_context_and_no_file(env: dict[str, str], tmp_path: Path) -> None:
    res = run(env, "config", "use-context", "moon")
    assert res.exit_code == 2
    assert res.output.strip() == (f"Error: no context 'moon' in {env['LATTICECTL_CONFIG']}; "
                                  "known: home, lab")
    assert run(env, "config", "current-context").stdout == "lab\n"  # untouched
    none = clean_env(tmp_path)
    res = run(none, "config", "current-context")
    assert res.exit_code == 1 and "current-context is not set" in res.output
    assert run(none, "config", "get-contexts").exit_code == 0


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_that_completes(shell: str, tmp_path: Path) -> None:
    res = run(clean_env(tmp_path), "completion", shell)
    assert res.exit_code == 0
    assert "_LATTICECTL_COMPLETE" in res.stdout and f"{shell}_complete" in res.stdout
    if shell == "bash":  # the script is valid bash
        subprocess.run(["bash", "-n"], input=res.stdout, text=True, check=True, timeout=30)
    # what the script asks latticectl: the new commands are among the completions
    out = subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()"],
        env={**os.environ, **clean_env(tmp_path), "_LATTICECTL_COMPLETE": "bash_complete",
             "COMP_WORDS": "latticectl ro", "COMP_CWORD": "1"},
        capture_output=True, text=True, timeout=30, check=True)
    assert [w.split(",", 1)[1] for w in out.stdout.splitlines()] == ["rollback"]


def test_completion_refuses_other_shells(tmp_path: Path) -> None:
    res = run(clean_env(tmp_path), "completion", "tcsh")
    assert res.exit_code == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in res.output
