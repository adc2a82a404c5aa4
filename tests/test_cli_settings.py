"""latticectl's global settings: the config file and its contexts, the precedence flag >
environment > context > the state of `up`, one-line errors for a bad config file, and
--debug (the traceback with its cause, then the same one line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.settings import Settings, config_path
from lattice.natsflags import NatsFlags
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


def write_up_state(env: dict[str, str], **values: str) -> None:
    state_dir = Path(env["LATTICECTL_STATE_DIR"])
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "state.json").write_text(json.dumps(values))


def repo_used(env: dict[str, str], *args: str) -> str:
    """The repository latticectl settled on: `get deployments` names it when it is not
    there (every candidate below is a directory that does not exist)."""
    result = run(env, *args, "get", "deployments")
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.endswith(": no such directory; pass --repo (a path or URL)"), line
    return Path(line.removeprefix("Error: ").split(":")[0]).name


# ---------------------------------------------------------------- where the file is

def test_config_file_is_under_xdg_config_home(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LATTICECTL_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path() == tmp_path / "xdg" / "latticectl" / "config.yaml"


def test_config_file_defaults_to_dot_config(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LATTICECTL_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config_path() == tmp_path / ".config" / "latticectl" / "config.yaml"


def test_the_command_reads_the_xdg_config_file(tmp_path: Path, env: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LATTICECTL_CONFIG", raising=False)
    xdg = tmp_path / "xdg"
    (xdg / "latticectl").mkdir(parents=True)
    (xdg / "latticectl" / "config.yaml").write_text(CONFIG.format(tmp=tmp_path))
    env["XDG_CONFIG_HOME"] = str(xdg)
    del env["LATTICECTL_CONFIG"]
    assert repo_used(env) == "from-context-lab"


# ---------------------------------------------------------------- contexts

def test_current_context_is_used_by_default(tmp_path: Path, env: dict[str, str]) -> None:
    write_config(env, tmp_path)
    assert repo_used(env) == "from-context-lab"


def test_context_flag_and_env_choose_another(tmp_path: Path, env: dict[str, str]) -> None:
    write_config(env, tmp_path)
    assert repo_used(env, "--context", "edge") == "from-context-edge"
    assert repo_used({**env, "LATTICECTL_CONTEXT": "edge"}) == "from-context-edge"
    # the flag beats the environment
    assert repo_used({**env, "LATTICECTL_CONTEXT": "edge"}, "--context", "lab") \
        == "from-context-lab"


def test_unknown_context_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    path = write_config(env, tmp_path)
    result = run(env, "--context", "nope", "status")
    assert result.exit_code == 2
    assert result.stderr == (f"Error: context 'nope' not found in {path}; "
                             "known: ['edge', 'lab']\n")


def test_context_without_a_config_file(tmp_path: Path, env: dict[str, str]) -> None:
    result = run(env, "--context", "lab", "status")
    assert result.exit_code == 2
    assert "context 'lab' requested but" in result.stderr
    assert env["LATTICECTL_CONFIG"] in result.stderr


@pytest.mark.parametrize(("args", "extra_env", "expected"), [
    (("--repo", "{tmp}/from-flag"), {"LATTICECTL_REPO": "{tmp}/from-env"}, "from-flag"),
    ((), {"LATTICECTL_REPO": "{tmp}/from-env"}, "from-env"),
    ((), {}, "from-context-lab"),
], ids=["flag beats env", "env beats context", "context beats up state"])
def test_precedence(tmp_path: Path, env: dict[str, str], args: tuple[str, ...],
                    extra_env: dict[str, str], expected: str) -> None:
    write_config(env, tmp_path)
    write_up_state(env, repo=str(tmp_path / "from-up"), nats_url="nats://up:4222")
    fill = {k: v.format(tmp=tmp_path) for k, v in extra_env.items()}
    assert repo_used({**env, **fill}, *(a.format(tmp=tmp_path) for a in args)) == expected


def test_up_state_is_the_last_resort(tmp_path: Path, env: dict[str, str]) -> None:
    write_up_state(env, repo=str(tmp_path / "from-up"), nats_url="nats://up:4222")
    assert repo_used(env) == "from-up"


def test_resolve_takes_each_setting_from_the_context(
        tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HOME", str(tmp_path))
    write_config(env, tmp_path)
    write_up_state(env, repo="/up", nats_url="nats://up:4222", lattice="up-lattice")
    state_dir = env["LATTICECTL_STATE_DIR"]

    def resolve(nats_url: str | None = None, **flags: str | None) -> Settings:
        args: dict[str, str | None] = {"repo": None, "lattice": None,
                                       "context": None, "state_dir": state_dir}
        return Settings.resolve(**{**args, **flags}, nats=NatsFlags(url=nats_url),
                                debug=False)

    lab = resolve()
    assert (lab.nats_url, lab.lattice) == ("nats://lab.example:4222", "lab-lattice")
    assert lab.nats_flags.creds == str(tmp_path / "lab.creds")  # ~ expanded
    edge = resolve(context="edge")
    assert edge.nats_url == "nats://edge.example:4222"
    assert edge.lattice == "up-lattice"  # edge names none: the state of `up`
    flagged = resolve(nats_url="nats://flag:4222", lattice="flag-lattice")
    assert (flagged.nats_url, flagged.lattice) == ("nats://flag:4222", "flag-lattice")


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


def test_an_unexpected_exception_is_one_line_and_its_traceback_with_debug(
        tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr("cli.status_cmd.open_view", boom)
    quiet = run(env, "status")
    assert quiet.exit_code == 2
    assert quiet.stderr == ("Error: RuntimeError: the disk is on fire "
                            "(rerun with --debug for details)\n")
    loud = run(env, "--debug", "status")
    assert loud.exit_code == 2
    assert loud.stderr.startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError("the disk is on fire")' in loud.stderr
    assert loud.stderr.endswith("\nError: RuntimeError: the disk is on fire\n")
