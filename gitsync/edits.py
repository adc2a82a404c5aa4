"""Commits that edit the desired state in place: ``rollback`` and ``suspend``/``resume``.

Both ride on :mod:`gitsync.apply`'s transaction (a commit built with plumbing on the
branch tip, pushed without force, planned again when the branch moved), with a plan of
their own:

* :func:`rollback_manifests` makes the manifests path (and only it) what it was at an
  earlier revision: files that differ get that revision's content, files added since are
  deleted. It is a new commit on top (a revert, not a reset), so history, the notes and
  the agent's superseded bookkeeping stay intact.
* :func:`set_suspended` sets or removes the annotation :data:`SUSPENDED` on a
  Deployment's ``metadata.annotations`` (Flux's ``suspend``/``resume``); the agent leaves
  a suspended deployment's instances as they are (:func:`is_suspended`).
"""

from __future__ import annotations

from collections.abc import Sequence

from gitsync.apply import (
    ApplyResult,
    Changes,
    EntityChange,
    _base,
    _check_result,
    _only_document,
    _open,
    _read_tree,
    _transaction,
    _Tree,
)
from gitsync.errors import ApplyError
from gitsync.gitcmd import StrPath
from lattice.manifest_loader import to_yaml
from lattice.manifests import Manifest

#: The annotation that suspends a deployment (value ``"true"``), as Flux's ``spec.suspend``.
SUSPENDED = "vinculum.io/suspended"


def is_suspended(manifest: Manifest) -> bool:
    """True when ``manifest`` carries ``vinculum.io/suspended: "true"``. Pure; the agent
    uses it to leave a deployment as it is."""
    return manifest.metadata.annotations.get(SUSPENDED, "").lower() == "true"


def rollback_manifests(repo_path: StrPath, revision: str, *, message: str | None = None,
                       dry_run: bool = False, manifests_path: str = "",
                       push: bool = True) -> ApplyResult:
    """Commit the manifests path as it was at ``revision`` (see module doc)."""
    base = _base(manifests_path)
    with _open(repo_path) as repo:
        sha = repo.git.rev_parse("--verify", "--quiet", f"{revision}^{{commit}}",
                                 with_exceptions=False).strip()
        if not sha:
            raise ApplyError(f"{revision}: no such revision in {repo_path} (see "
                             "`latticectl history`)")
        target = _read_tree(repo.commit(sha).tree, base)

    def plan(existing: _Tree) -> tuple[Changes, list[EntityChange]]:
        changes: Changes = {p: c for p, c in target.files.items()
                            if existing.files.get(p) != c}
        changes |= {p: None for p in existing.files if p not in target.files}
        _check_result(existing, changes, base)
        return changes, _entity_changes(existing, target, set(changes))

    return _transaction(repo_path, plan, verb=f"rollback to {sha[:12]}",
                        message=message or f"Roll back the desired state to {sha[:12]}",
                        dry_run=dry_run, base=base, push=push)


def _entity_changes(before: _Tree, after: _Tree, paths: set[str]) -> list[EntityChange]:
    """The entities that the files in ``paths`` create, configure or delete (an entity
    whose file changes is configured, even when only comments or defaults differ). Pure."""
    old = {(m.kind, m.name): m for m in before.loaded.manifests if m.path in paths}
    new = {(m.kind, m.name): m for m in after.loaded.manifests if m.path in paths}
    out = []
    for kind, name in sorted(old.keys() | new.keys()):
        was, now = old.get((kind, name)), new.get((kind, name))
        if now is None:
            assert was is not None
            out.append(EntityChange(kind, name, was.path, "deleted"))
        elif was is None:
            out.append(EntityChange(kind, name, now.path, "created"))
        else:  # its file changes (if only in comments or defaults written out)
            out.append(EntityChange(kind, name, now.path, "configured"))
    return out


def set_suspended(repo_path: StrPath, names: Sequence[str], suspended: bool, *,
                  message: str | None = None, dry_run: bool = False,
                  manifests_path: str = "", push: bool = True) -> ApplyResult:
    """Commit the annotation :data:`SUSPENDED` set (or removed) on each Deployment of
    ``names``; one already so is ``unchanged``, an absent one ``not found``."""
    base = _base(manifests_path)
    verb = "suspend" if suspended else "resume"

    def plan(existing: _Tree) -> tuple[Changes, list[EntityChange]]:
        changes: Changes = {}
        out: list[EntityChange] = []
        for name in names:
            found = existing.loaded.find("Deployment", name)
            if found is None:
                out.append(EntityChange("Deployment", name, "", "not found"))
                continue
            if is_suspended(found.manifest) == suspended:
                out.append(EntityChange("Deployment", name, found.path, "unchanged"))
                continue
            _only_document(existing, found.path, "Deployment", name)
            annotations = dict(found.manifest.metadata.annotations)
            if suspended:
                annotations[SUSPENDED] = "true"
            else:
                annotations.pop(SUSPENDED, None)
            meta = found.manifest.metadata.model_copy(update={"annotations": annotations})
            changes[found.path] = to_yaml(found.manifest.model_copy(
                update={"metadata": meta})).encode()
            out.append(EntityChange("Deployment", name, found.path,
                                    "suspended" if suspended else "resumed"))
        _check_result(existing, changes, base)
        return changes, out

    return _transaction(repo_path, plan, verb=verb, message=message, dry_run=dry_run,
                        base=base, push=push)
