"""gitsync.apply: validate, commit at canonical paths, push, retry on a race.

Real clones of a bare "remote"; the race is made deterministic with a pre-push hook that
lands a colleague's commit on the remote just before our push.
"""

from __future__ import annotations

from pathlib import Path

import git
import pytest
from click.testing import CliRunner

from cli.main import cli
from gitsync.apply import apply_manifests, delete_manifests, load_inputs
from gitsync.errors import ApplyError, InvalidManifestsError
from lattice.manifests import Manifest
from tests.gitrepo import (
    BINDINGS,
    DEPLOYMENT,
    ELIDED_ACTOR,
    clone,
    commit_files,
    count_commits,
    deployment,
    file_url,
    init_repo,
    ls_tree,
    make_remote,
    no_identity,
    tip,
    use_identity,
)


def docs(*texts: str) -> list[Manifest]:
    return load_inputs([(f"in{i}.yaml", t) for i, t in enumerate(texts)])


def test_apply_twice_one_commit_then_unchanged(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path, files={"README.md": "gitops"})
    first = apply_manifests(work.working_tree_dir or "", docs(DEPLOYMENT, BINDINGS))
    assert [str(c) for c in first.changes] == ["deployment/amazing-deployment created",
                                              "bindingset/amazing-bindings created"]
    assert first.commit is not None and first.pushed and first.remote == "origin"
    assert tip(bare, "refs/heads/main") == first.commit == work.head.commit.hexsha
    files = ls_tree(git.Repo(bare), "main")
    assert set(files) == {"README.md", "deployments/amazing-deployment.yaml",
                          "bindingsets/amazing-bindings.yaml"}
    assert (Path(work.working_tree_dir or "") / "deployments/amazing-deployment.yaml").exists()
    message = str(git.Repo(bare).commit("main").message)
    assert message.startswith("latticectl apply: deployment/amazing-deployment created, "
                              "bindingset/amazing-bindings created")
    again = apply_manifests(work.working_tree_dir or "", docs(DEPLOYMENT, BINDINGS))
    assert again.commit is None and not again.changed
    assert {c.action for c in again.changes} == {"unchanged"}
    assert count_commits(git.Repo(bare), "main") == 2
    assert work.git.status("--porcelain") == ""


def test_changed_content_is_configured_with_the_given_message(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)  # starts with the two sample files
    result = apply_manifests(work.working_tree_dir or "",
                             docs(DEPLOYMENT.replace("leds=12", "leds=16")),
                             message="more LEDs")
    assert [str(c) for c in result.changes] == ["deployment/amazing-deployment configured"]
    commit = git.Repo(bare).commit("main")
    assert str(commit.message).startswith("more LEDs\n")
    assert "leds=16" in ls_tree(git.Repo(bare), "main")["deployments/amazing-deployment.yaml"]


def test_dry_run_writes_nothing_and_shows_the_diff(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path, files={"README.md": "x"})
    before = tip(bare, "refs/heads/main")
    result = apply_manifests(work.working_tree_dir or "", docs(deployment("a")), dry_run=True)
    assert result.dry_run and result.commit is None
    assert "+++ b/deployments/a.yaml" in result.diff and "+kind: Deployment" in result.diff
    assert tip(bare, "refs/heads/main") == before
    assert not (Path(work.working_tree_dir or "") / "deployments").exists()


def test_an_invalid_document_among_valid_ones_writes_nothing() -> None:
    with pytest.raises(InvalidManifestsError) as info:
        load_inputs([("ok.yaml", deployment("a")),
                     ("bad.yaml", deployment("b", ELIDED_ACTOR))])
    assert info.value.errors[0].startswith("bad.yaml:6: spec.actors[0].id: ")
    with pytest.raises(InvalidManifestsError):
        load_inputs([("empty.yaml", "")])


def test_refuses_local_changes_to_its_files_and_never_commits_other_staged(
        tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)
    root = Path(work.working_tree_dir or "")
    (root / "notes.txt").write_text("staged, not for apply")
    work.git.add("notes.txt")
    (root / "deployments/amazing-deployment.yaml").write_text("# local edit\n" + DEPLOYMENT)
    with pytest.raises(ApplyError, match="local changes"):
        apply_manifests(root, docs(DEPLOYMENT.replace("nats", "kafka")))
    work.git.checkout("--", "deployments/amazing-deployment.yaml")
    work.git.add("deployments/amazing-deployment.yaml")  # nothing changed: not dirty
    result = apply_manifests(root, docs(deployment("other")))
    assert result.commit is not None
    assert "notes.txt" not in ls_tree(git.Repo(bare), "main")
    assert "A  notes.txt" in work.git.status("--porcelain").splitlines()
    (root / "deployments/amazing-deployment.yaml").write_text(DEPLOYMENT + "# staged\n")
    work.git.add("deployments/amazing-deployment.yaml")
    with pytest.raises(ApplyError, match=r"amazing-deployment\.yaml: local changes"):
        apply_manifests(root, docs(DEPLOYMENT.replace("nats", "kafka")))


def test_push_race_fetches_and_reapplies_on_the_new_tip(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path, files={"README.md": "x"})
    colleague = clone(bare, tmp_path / "colleague")
    hook = Path(work.git_dir) / "hooks" / "pre-push"
    hook.write_text(
        "#!/bin/sh\n"  # the first push from `work` loses the race against a colleague
        "unset GIT_DIR GIT_INDEX_FILE GIT_WORK_TREE GIT_PREFIX\n"
        f"if [ ! -e '{tmp_path}/raced' ]; then touch '{tmp_path}/raced'\n"
        f"  cd '{colleague.working_tree_dir}' && mkdir -p deployments && "
        f"printf '%s' '{deployment('theirs')}' > deployments/theirs.yaml && "
        "git add -A && git commit -qm theirs && git push -q origin HEAD:main\nfi\n")
    hook.chmod(0o755)
    result = apply_manifests(work.working_tree_dir or "", docs(deployment("mine")))
    assert result.attempts == 2 and result.pushed, result
    assert not result.warnings, result.warnings
    files = ls_tree(git.Repo(bare), "main")
    assert {"deployments/theirs.yaml", "deployments/mine.yaml"} <= set(files)
    assert work.head.commit.hexsha == result.commit == tip(bare, "refs/heads/main")
    assert (Path(work.working_tree_dir or "") / "deployments/theirs.yaml").exists()


def test_refuses_unpushed_local_commits(tmp_path: Path) -> None:
    _bare, work = make_remote(tmp_path)
    commit_files(work, {"wip.txt": "not pushed"})
    with pytest.raises(ApplyError, match="not on origin/main"):
        apply_manifests(work.working_tree_dir or "", docs(deployment("x")))


def test_local_branch_behind_is_fast_forwarded(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)
    colleague = clone(bare, tmp_path / "colleague")
    theirs = commit_files(colleague, {"deployments/c.yaml": deployment("c")})
    colleague.git.push("-q")
    result = apply_manifests(work.working_tree_dir or "", docs(deployment("x")))
    assert result.commit is not None and result.attempts == 1
    assert git.Repo(bare).commit("main").parents[0].hexsha == theirs
    assert work.head.commit.hexsha == result.commit and not result.warnings


def test_local_repository_without_remote(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "r")
    commit_files(repo, {"README.md": "x"})
    root = Path(repo.working_tree_dir or "")
    (root / "staged.txt").write_text("mine")
    repo.git.add("staged.txt")
    result = apply_manifests(root, docs(deployment("a")), push=True)
    assert result.commit is not None and not result.pushed and result.remote is None
    assert repo.head.commit.hexsha == result.commit
    assert "staged.txt" not in ls_tree(repo, "HEAD")
    status = repo.git.status("--porcelain").splitlines()
    assert status == ["A  staged.txt"], status
    assert (root / "deployments/a.yaml").read_text().startswith("apiVersion: vinculum.io/v1")


def test_bare_repository_and_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_identity(monkeypatch)  # a URL is cloned into a temp dir: no repository config there
    bare, _work = make_remote(tmp_path)
    direct = apply_manifests(bare, docs(deployment("direct")))
    assert direct.commit == tip(bare, "refs/heads/main") and not direct.pushed
    via_url = apply_manifests(file_url(bare), docs(deployment("via-url")))
    assert via_url.pushed and via_url.commit == tip(bare, "refs/heads/main")
    assert {"deployments/direct.yaml", "deployments/via-url.yaml"} <= set(
        ls_tree(git.Repo(bare), "main"))


def test_no_git_identity_is_one_clear_line(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bare, _work = make_remote(tmp_path)
    no_identity(monkeypatch, tmp_path / "home")
    before = tip(bare, "refs/heads/main")
    with pytest.raises(ApplyError, match=r"no user identity.*git config user\.name .*"
                       r"git config user\.email") as err:
        apply_manifests(file_url(bare), docs(deployment("a")))
    assert "\n" not in err.value.message
    assert tip(bare, "refs/heads/main") == before
    env = {"LATTICECTL_CONFIG": str(tmp_path / "none.yaml"),
           "LATTICECTL_STATE_DIR": str(tmp_path / "state"),
           "LATTICECTL_NATS_URL": "", "LATTICECTL_REPO": ""}
    (tmp_path / "d.yaml").write_text(deployment("a"))
    res = CliRunner().invoke(cli, ["--repo", file_url(bare), "apply", "-f",
                                   str(tmp_path / "d.yaml")], env=env)
    assert res.exit_code != 0, res.output
    assert res.output.strip().splitlines() == [f"Error: {err.value.message}"]


def test_empty_remote_gets_its_first_commit(tmp_path: Path) -> None:
    bare = tmp_path / "remote.git"
    init_repo(bare, bare=True)
    work = clone(bare, tmp_path / "work")
    result = apply_manifests(work.working_tree_dir or "", docs(deployment("a")))
    assert result.pushed and tip(bare, "refs/heads/main") == result.commit
    assert work.head.commit.hexsha == result.commit


def test_entity_found_elsewhere_is_updated_in_place(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path, files={"apps/mine.yml": deployment("a"),
                                              "apps/multi.yaml": deployment("m1") + "---\n"
                                              + deployment("m2")})
    result = apply_manifests(work.working_tree_dir or "", docs(deployment("a", replicas=3)))
    assert [(c.path, c.action) for c in result.changes] == [("apps/mine.yml", "configured")]
    assert "deployments/a.yaml" not in ls_tree(git.Repo(bare), "main")
    with pytest.raises(ApplyError, match="together with other documents"):
        apply_manifests(work.working_tree_dir or "", docs(deployment("m1", replicas=2)))
    with pytest.raises(ApplyError, match="together with other documents"):
        delete_manifests(work.working_tree_dir or "", [("Deployment", "m2")])


def test_manifests_path_and_occupied_canonical_path(tmp_path: Path) -> None:
    _bare, work = make_remote(tmp_path, files={"gitops/deployments/a.yaml": deployment("b")})
    with pytest.raises(ApplyError, match="already holds Deployment/b"):
        apply_manifests(work.working_tree_dir or "", docs(deployment("a")),
                        manifests_path="gitops")
    ok = apply_manifests(work.working_tree_dir or "", docs(deployment("c")),
                         manifests_path="gitops")
    assert [c.path for c in ok.changes] == ["gitops/deployments/c.yaml"]


def test_delete_by_kind_and_name(tmp_path: Path) -> None:
    bare, work = make_remote(tmp_path)
    result = delete_manifests(work.working_tree_dir or "",
                              [("Deployment", "amazing-deployment"), ("BindingSet", "nope")])
    assert [str(c) for c in result.changes] == ["deployment/amazing-deployment deleted",
                                               "bindingset/nope not found"]
    files = ls_tree(git.Repo(bare), "main")
    assert "deployments/amazing-deployment.yaml" not in files
    assert "bindingsets/amazing-bindings.yaml" in files
    assert not (Path(work.working_tree_dir or "") / "deployments/amazing-deployment.yaml").exists()
    nothing = delete_manifests(work.working_tree_dir or "", [("Deployment", "amazing-deployment")])
    assert nothing.commit is None and nothing.changes[0].action == "not found"


def test_detached_head_and_not_a_repository(tmp_path: Path) -> None:
    _bare, work = make_remote(tmp_path)
    work.git.checkout("-q", "--detach")
    with pytest.raises(ApplyError, match="detached"):
        apply_manifests(work.working_tree_dir or "", docs(deployment("a")))
    (tmp_path / "plain").mkdir()
    with pytest.raises(ApplyError, match="not in a git repository"):
        apply_manifests(tmp_path / "plain", docs(deployment("a")))
