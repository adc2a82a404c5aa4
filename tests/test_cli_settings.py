"""latticectl's global settings: one-line errors for a bad config file, and --debug (the
traceback with its cause, then the same one line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cliutil import run

CONFIG = """\
current-context: lab
contexts:
  lab:
    repo: {tmp}/from-context-lab
    nats-url: nats://lab.example:4222
    nats-creds: ~/lab.creds
    lattice: lab-lattice
  edge:
    repo: {tmp}/from-context-edge
    nats-url: nats://edge.example:4222
"""


def write_config(env: dict[str, str], tmp: Path, text: str | None = None) -> Path:
    path = Path(env["LATTICECTL_CONFIG"])
    path.write_text(CONFIG.format(tmp=tmp) if text is None else text)
    return path


# ---------------------------------------------------------------- a bad config file

@pytest.mark.parametrize(("text", "field", "got"), [
    ("contexts: 5\ncurrent-context: lab\n", "contexts:", "got int 5"),
    ("- a\n- b\n", "expected a mapping", "got list"),
    ("current-context: [lab]\ncontexts: {lab: {}}\n", "current-context:", "got list"),
    ("current-context: lab\ncontexts:\n  lab: just-a-string\n", "contexts.lab:",
     "got str 'just-a-string'"),
    ("current-context: lab\ncontexts:\n  lab:\n    nats-url: 4222\n",
     "contexts.lab.nats-url:", "got int 4222"),
    ("current-context: lab\ncontexts:\n  lab:\n    nats_url: nats://x\n",
     "contexts.lab.nats_url: unknown setting", "known: repo, nats-url"),
    ("current-context: lab\ncontexts: {lab: [\n", "not valid YAML", "(line 3, column 1)"),
], ids=["contexts-int", "top-level-list", "current-context-list", "context-str",
        "value-int", "unknown-key", "bad-yaml"])
def test_bad_config_file_is_one_line(tmp_path: Path, env: dict[str, str], text: str,
                                     field: str, got: str) -> None:
    path = write_config(env, tmp_path, text)
    result = run(env, "status")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"Error: {path}: "), result.stderr
    assert field in result.stderr and got in result.stderr
    assert "TypeError" not in result.stderr and "--debug" not in result.stderr


# ---------------------------------------------------------------- --debug

def test_debug_shows_the_traceback_of_a_bad_config_file(tmp_path: Path,
                                                        env: dict[str, str]) -> None:
    """Settings cannot be built, and --debug still holds: it is read from the flags."""
    path = write_config(env, tmp_path, "contexts: 5\ncurrent-context: lab\n")
    result = run(env, "--debug", "status")
    assert result.exit_code == 2
    assert result.stderr.startswith("Traceback (most recent call last):"), result.stderr
    assert "load_context" in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"Error: {path}: contexts: expected a mapping"), last


def test_debug_shows_the_cause_a_one_line_error_hides(tmp_path: Path,
                                                      env: dict[str, str]) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    line = (f"Error: {plain} is not in a git repository; pass --repo, set LATTICECTL_REPO, "
            "or cd into the repository\n")
    quiet = run(env, "--repo", str(plain), "get", "deployments")
    assert quiet.exit_code == 2
    assert quiet.stderr == line
    loud = run(env, "--debug", "--repo", str(plain), "get", "deployments")
    assert loud.exit_code == 2
    assert loud.stderr.startswith("Traceback (most recent call last):")
    assert "git.exc.InvalidGitRepositoryError" in loud.stderr  # the cause, chained
    assert "During handling of the above exception" in loud.stderr
    assert loud.stderr.endswith(line)
