"""Shared by the ``tests/test_cli_*.py`` files: a clean environment for ``latticectl``, a
runner, and a status branch written by the real :class:`gitsync.status.StatusWriter`.

Most CLI tests do not need a running agent: they write the status the agent would write
(reports and notes, through the writer the agent uses) and check what latticectl prints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import git
from click.testing import CliRunner, Result

from cli.main import cli
from gitsync.source import GitSource
from gitsync.status import StatusWriter
from lattice.protocol import utcnow
from lattice.status import (
    BindingSetStatus,
    Condition,
    Count,
    DeploymentStatus,
    EntityCount,
    HostStatus,
    Phase,
    Placement,
    Reason,
    RevisionNote,
    StatusReport,
    SyncSummary,
)
from tests.gitrepo import ACTOR, BINDINGS, DEPLOYMENT, commit_files, init_repo

HOST_PI = "N" + "A" * 55
HOST_VM = "N" + "B" * 55
UNPLACED = "no host satisfies leds=12 (vm1: label leds missing)"
#: Why a closed port cannot be reached, in the parentheses of ``cannot reach NATS at URL
#: (...)`` (once: "no answer within 2s; last error: [Errno 111] Connect call failed ...").
CAUSE = r"\((?!cannot reach)(?:[^()]|\([^()]*\))+\)"


def clean_env(tmp: Path) -> dict[str, str]:
    """No config file, no `up` state, no NATS URL or repo from the caller's environment."""
    return {"LATTICECTL_CONFIG": str(tmp / "none.yaml"),
            "LATTICECTL_STATE_DIR": str(tmp / "state"),
            "LATTICECTL_NATS_URL": "", "LATTICECTL_REPO": "", "LATTICECTL_CONTEXT": "",
            "LATTICECTL_LATTICE": "",
            **{f"LATTICECTL_NATS_{k}": "" for k in (
                "CREDS", "NKEY_SEED", "USER", "PASSWORD", "TLS_CA", "TLS_CERT", "TLS_KEY")}}


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    """``latticectl ARGS`` in-process, as a user would type it (exceptions become exit
    codes, as in the real program)."""
    return CliRunner().invoke(cli, list(args), env=env, input=stdin)


def gitops_repo(tmp: Path) -> git.Repo:
    """A repository with the feature request's Deployment and BindingSet committed."""
    repo = init_repo(tmp / "gitops")
    commit_files(repo, {"deployments/amazing-deployment.yaml": DEPLOYMENT,
                        "bindingsets/amazing-bindings.yaml": BINDINGS}, "deploy")
    return repo


def report(sha: str, *, phase: Phase = Phase.SYNCED, attempted: str | None = None,
           errors: list[str] | None = None) -> StatusReport:
    """The report an agent writes for ``sha`` on a three-host lattice: Synced (1/1 actors,
    2/2 providers, 1/1 bindings) or Degraded (the LED controller unplaced)."""
    now = utcnow()
    created = now - timedelta(minutes=5)
    synced = phase is Phase.SYNCED
    placements = [
        Placement(entity=ACTOR, kind="actor", host_id=HOST_VM, host_name="vm1", since=created),
        Placement(entity="wascc:messaging/default", kind="provider", host_id=HOST_VM,
                  host_name="vm1", since=created),
        Placement(entity="iot:ledcontroller/default", kind="provider",
                  host_id=HOST_PI if synced else None, host_name="pi" if synced else None,
                  since=created if synced else None, message="" if synced else UNPLACED),
    ]
    cond = Condition.ready() if synced else Condition.stalled(Reason.UNPLACEABLE, UNPLACED)
    dep = DeploymentStatus(
        name="amazing-deployment", revision=sha, phase=phase,
        spec={"actors": [{"id": ACTOR}],
              "providers": [{"id": "wascc:messaging", "vendor_id": "nats"},
                            {"id": "iot:ledcontroller", "vendor_id": "wascc",
                             "affinity_rules": ["leds=12"]}]},
        actors=Count(ready=1, desired=1), providers=Count(ready=2 if synced else 1, desired=2),
        placements=placements, conditions=[cond], created=created)
    bs = BindingSetStatus(
        name="amazing-bindings", revision=sha, phase=Phase.SYNCED,
        spec={"bindings": [{"capability_id": "wascc:messaging", "actor": ACTOR}]},
        bindings=Count(ready=1, desired=1), conditions=[Condition.ready()], created=created,
        placements=[Placement(entity=f"{ACTOR}->wascc:messaging/default", kind="binding",
                              host_id=HOST_VM, host_name="vm1", since=created)])
    hosts = {
        HOST_PI: HostStatus(host_id=HOST_PI, name="pi", labels={"leds": "12"},
                            started_at=created, last_seen=now, providers=1 if synced else 0),
        HOST_VM: HostStatus(host_id=HOST_VM, name="vm1", labels={"zone": "a"},
                            started_at=created, last_seen=now, actors=1, providers=1,
                            bindings=1),
    }
    summary = SyncSummary(
        branch="main", attempted_revision=attempted or sha, applied_revision=sha, phase=phase,
        message="observed matches desired" if synced else UNPLACED,
        errors=errors if errors is not None else ([] if synced else [UNPLACED]),
        updated=now, deployments=1, bindingsets=1, hosts=len(hosts))
    return StatusReport(summary=summary, deployments={dep.name: dep},
                        bindingsets={bs.name: bs}, hosts=hosts)


def note(sha: str, phase: Phase = Phase.SYNCED, *, ready: int = 3,
         errors: list[str] | None = None) -> RevisionNote:
    now = utcnow()
    return RevisionNote(revision=sha, phase=phase, first_seen=now, updated=now,
                        errors=errors or [],
                        entities=[EntityCount(kind="Deployment", name="amazing-deployment",
                                              phase=phase, ready=ready, desired=3)])


def write_status(repo: git.Repo | Path, data_dir: Path, status: StatusReport | None = None,
                 notes: dict[str, RevisionNote] | None = None) -> None:
    """Write notes and a status commit the way the agent does (its own writer)."""
    location = repo.working_tree_dir if isinstance(repo, git.Repo) else str(repo)
    source = GitSource.open(str(location), data_dir=data_dir)
    writer = StatusWriter(source, min_interval=0.0)
    try:
        for sha, n in (notes or {}).items():
            writer.note(sha, n)
        if status is not None:
            writer.publish(status)
    finally:
        writer.close()
        source.close()


def latticectl(*args: str, env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    """``latticectl ARGS`` as a real process (for -w and -f, stopped by Ctrl-C), its
    stdout and stderr going to ``out``."""
    with open(out, "wb") as f:
        return subprocess.Popen(
            [sys.executable, "-c", "from cli.main import main; main()", *args],
            stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})


def interrupt(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """Ctrl-C: SIGINT, then the exit status."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
        raise
