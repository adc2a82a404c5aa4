"""latticectl apply / delete / sync: the commands, their one-line errors, the nudge, and
concurrent apply processes against one bare remote."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import git
import pytest
from click.testing import CliRunner, Result
from nats.aio.client import Client
from nats.aio.msg import Msg

from cli.main import cli
from hostagent.host import server_barrier
from lattice.localnats import NatsServer
from lattice.protocol import Subjects, SyncNudge
from tests.gitrepo import (
    BINDINGS,
    DEPLOYMENT,
    ELIDED_ACTOR,
    clone,
    count_commits,
    deployment,
    ls_tree,
    make_remote,
    tip,
)
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment with no config file and no `up` state to pick a NATS URL from."""
    return {"LATTICECTL_CONFIG": str(tmp_path / "none.yaml"),
            "LATTICECTL_STATE_DIR": str(tmp_path / "state"),
            "LATTICECTL_NATS_URL": "", "LATTICECTL_REPO": ""}


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_apply_file_twice_then_unchanged(tmp_path: Path, env: dict[str, str]) -> None:
    bare, work = make_remote(tmp_path, files={"README.md": "x"})
    f = write(tmp_path / "in" / "deploy.yaml", DEPLOYMENT)
    first = run(env, "--repo", str(work.working_tree_dir), "apply", "-f", f)
    assert first.exit_code == 0, first.output
    assert "deployment/amazing-deployment created" in first.output
    assert "pushed to origin" in first.output
    second = run(env, "--repo", str(work.working_tree_dir), "apply", "-f", f)
    assert second.exit_code == 0 and second.output.strip() == (
        "deployment/amazing-deployment unchanged")
    assert count_commits(git.Repo(bare), "main") == 2


def test_the_current_directory_is_the_repository_unless_up_runs_one(
        tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """No --repo: the current directory's repository (searched upwards); a running `up`'s
    state names another repository, and that one wins (see docs/cli.md, Settings)."""
    _bare, work = make_remote(tmp_path / "here", files={"README.md": "x"})
    sub = Path(str(work.working_tree_dir)) / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    f = write(tmp_path / "in" / "deploy.yaml", DEPLOYMENT)
    res = run(env, "apply", "-f", f)
    assert res.exit_code == 0, res.output
    assert "deployments/amazing-deployment.yaml" in work.git.ls_files()
    _bare2, lattice_repo = make_remote(tmp_path / "up", files={"README.md": "x"})
    state = Path(env["LATTICECTL_STATE_DIR"])
    state.mkdir(parents=True, exist_ok=True)
    (state / "state.json").write_text(json.dumps(
        {"repo": str(lattice_repo.working_tree_dir), "procs": []}))
    res = run(env, "apply", "-f", write(tmp_path / "in" / "d2.yaml", deployment("b")))
    assert res.exit_code == 0, res.output
    assert "deployments/b.yaml" in lattice_repo.git.ls_files()
    assert "deployments/b.yaml" not in work.git.ls_files()


def test_apply_directory_and_stdin(tmp_path: Path, env: dict[str, str]) -> None:
    bare, work = make_remote(tmp_path, files={"README.md": "x"})
    write(tmp_path / "in" / "d.yaml", DEPLOYMENT)
    write(tmp_path / "in" / "sub" / "b.yml", BINDINGS)
    write(tmp_path / "in" / "notes.txt", "ignored")
    res = run(env, "--repo", str(work.working_tree_dir), "apply", "-f", str(tmp_path / "in"))
    assert res.exit_code == 0, res.output
    res = run(env, "--repo", str(work.working_tree_dir), "apply", "-f", "-", "-m", "from stdin",
              stdin=deployment("piped"))
    assert res.exit_code == 0 and "deployment/piped created" in res.output
    assert str(git.Repo(bare).commit("main").message).startswith("from stdin")
    assert {"deployments/amazing-deployment.yaml", "bindingsets/amazing-bindings.yaml",
            "deployments/piped.yaml"} <= set(ls_tree(git.Repo(bare), "main"))


def test_invalid_document_among_valid_exits_non_zero_and_writes_nothing(
        tmp_path: Path, env: dict[str, str]) -> None:
    bare, work = make_remote(tmp_path, files={"README.md": "x"})
    before = tip(bare, "refs/heads/main")
    ok = write(tmp_path / "in" / "ok.yaml", deployment("ok"))
    bad = write(tmp_path / "in" / "bad.yaml", DEPLOYMENT.replace(
        "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW", ELIDED_ACTOR))
    res = CliRunner().invoke(cli, ["--repo", str(work.working_tree_dir), "apply", "-f", ok,
                                   "-f", bad], env=env)
    assert res.exit_code == 2
    assert f"{bad}:8: spec.actors[0].id:" in res.output
    assert "nothing written" in res.output and "Traceback" not in res.output
    assert tip(bare, "refs/heads/main") == before
    assert not (Path(str(work.working_tree_dir)) / "deployments").exists()


def test_dry_run_prints_the_diff(tmp_path: Path, env: dict[str, str]) -> None:
    bare, work = make_remote(tmp_path, files={"README.md": "x"})
    f = write(tmp_path / "d.yaml", deployment("a"))
    res = run(env, "--repo", str(work.working_tree_dir), "apply", "--dry-run", "-f", f)
    assert res.exit_code == 0 and "(dry run) would commit on main" in res.output
    assert "+++ b/deployments/a.yaml" in res.output
    assert count_commits(git.Repo(bare), "main") == 1


def test_delete_commands(tmp_path: Path, env: dict[str, str]) -> None:
    bare, work = make_remote(tmp_path)
    repo = str(work.working_tree_dir)
    res = run(env, "--repo", repo, "delete", "deployment", "amazing-deployment")
    assert res.exit_code == 0 and "deployment/amazing-deployment deleted" in res.output
    f = write(tmp_path / "b.yaml", BINDINGS)
    res = run(env, "--repo", repo, "delete", "-f", f)
    assert res.exit_code == 0 and "bindingset/amazing-bindings deleted" in res.output
    assert set(ls_tree(git.Repo(bare), "main")) == set()
    missing = CliRunner().invoke(cli, ["--repo", repo, "delete", "bindingset", "gone"], env=env)
    assert missing.exit_code == 2 and "not found: bindingset/gone" in missing.output
    ok = run(env, "--repo", repo, "delete", "bs", "gone", "--ignore-not-found")
    assert ok.exit_code == 0
    bad = CliRunner().invoke(cli, ["--repo", repo, "delete", "pods", "x"], env=env)
    assert bad.exit_code == 2 and "unknown kind 'pods'" in bad.output


def test_errors_are_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "plain").mkdir()
    f = write(tmp_path / "d.yaml", deployment("a"))
    for args in (["--repo", str(tmp_path / "plain"), "apply", "-f", f],
                 ["--repo", str(tmp_path / "plain"), "apply", "-f", str(tmp_path / "nope")],
                 ["--repo", str(tmp_path / "plain"), "apply"],
                 ["sync"]):
        res = CliRunner().invoke(cli, args, env=env)
        assert res.exit_code == 2, (args, res.output)
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), (args, res.output)


async def _collect(nc: Client, lattice: str) -> list[SyncNudge]:
    got: list[SyncNudge] = []

    async def on(msg: Msg) -> None:
        got.append(SyncNudge.model_validate_json(msg.data))
    await nc.subscribe(Subjects(lattice).nudge, cb=on)
    await server_barrier(nc)  # the subscription is live before anything is applied
    return got


async def test_apply_and_sync_publish_the_nudge(tmp_path: Path, env: dict[str, str],
                                                nats_server: NatsServer, nc: Client,
                                                lattice_id: str) -> None:
    _bare, work = make_remote(tmp_path, files={"README.md": "x"})
    got = await _collect(nc, lattice_id)
    env = {**env, "LATTICECTL_NATS_URL": nats_server.url, "LATTICECTL_LATTICE": lattice_id}
    f = write(tmp_path / "d.yaml", deployment("a"))
    res = await asyncio.to_thread(run, env, "--repo", str(work.working_tree_dir), "apply",
                                  "-f", f)
    assert res.exit_code == 0, res.output
    await eventually(lambda: len(got) == 1, timeout=5, message="nudge after apply")
    assert got[0].revision == work.head.commit.hexsha and got[0].reason == "latticectl apply"
    # nobody answers the nudge here (no agent): it is sent all the same, and sync says so
    res = await asyncio.to_thread(run, env, "sync", "--timeout", "300ms")
    assert res.exit_code == 1 and f"no agent answered on lattice {lattice_id}" in res.output
    await eventually(lambda: len(got) == 2, timeout=5, message="nudge after sync")
    unchanged = await asyncio.to_thread(run, env, "--repo", str(work.working_tree_dir),
                                        "apply", "-f", f)
    assert unchanged.exit_code == 0
    res = await asyncio.to_thread(run, env, "sync", "--reason", "x", "--timeout", "300ms")
    await eventually(lambda: len(got) == 3, timeout=5)
    assert got[2].reason == "x", "no nudge for an unchanged apply"


def _spawn_apply(repo: str, manifest: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--repo", repo, "apply", "-f", manifest],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


@pytest.mark.parametrize("same_clone", [False, True], ids=["two-clones", "one-clone"])
def test_concurrent_applies_both_land(tmp_path: Path, env: dict[str, str],
                                      same_clone: bool) -> None:
    bare, work = make_remote(tmp_path, files={"README.md": "x"})
    other = work if same_clone else clone(bare, tmp_path / "other")
    names = ["left", "right", "third"]
    procs = [_spawn_apply(str(r.working_tree_dir), write(tmp_path / f"{n}.yaml", deployment(n)),
                          env) for n, r in zip(names, [work, other, other], strict=True)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    files = ls_tree(git.Repo(bare), "main")
    assert {f"deployments/{n}.yaml" for n in names} <= set(files), outputs
    assert count_commits(git.Repo(bare), "main") == 4
