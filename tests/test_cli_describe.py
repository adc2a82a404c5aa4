"""latticectl describe: spec, placements, decline reasons, conditions, history, events."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import git
import pytest
from nats.aio.client import Client

from lattice.localnats import NatsServer
from lattice.protocol import ANN_KIND, ANN_NAME, CommandOp, StartActorCommand
from lattice.status import Phase
from tests.cliutil import CAUSE, UNPLACED, gitops_repo, note, report, run, write_status
from tests.gitrepo import ACTOR, OTHER_ACTOR
from tests.helpers import eventually
from tests.hostproc import HostPool, command, ping


@pytest.fixture
def repo(tmp_path: Path, env: dict[str, str]) -> git.Repo:
    repo = gitops_repo(tmp_path)
    env["LATTICECTL_REPO"] = str(repo.working_tree_dir)
    return repo


def section(text: str, title: str) -> list[str]:
    """The indented lines under ``title:`` in describe's output."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    out = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        out.append(line.strip())
    return out


def test_describe_a_synced_deployment(repo: git.Repo, env: dict[str, str],
                                      tmp_path: Path) -> None:
    sha = repo.head.commit.hexsha
    write_status(repo, tmp_path / "agent", report(sha, phase=Phase.PROGRESSING))
    write_status(repo, tmp_path / "agent", report(sha))
    for alias in ("deployment", "deploy", "deployments"):
        result = run(env, "describe", alias, "amazing-deployment")
        assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Name:         amazing-deployment" in out
    assert "Status:       Synced" in out
    assert "Actors:       1/1 ready" in out and "Providers:    2/2 ready" in out
    assert "- leds=12" in "\n".join(section(out, "Spec:"))
    placements = [line.split() for line in section(out, "Placements:")]
    assert placements[0] == ["KIND", "ENTITY", "HOST", "SINCE", "MESSAGE"]
    assert ["provider", "iot:ledcontroller/default", "pi", "5m"] in placements
    assert ["actor", ACTOR, "vm1", "5m"] in placements
    assert "Unplaced:" not in out
    assert section(out, "Conditions:")[1].split()[:3] == ["Ready", "True", "Reconciled"]
    history = section(out, "History:")
    assert [h.split()[2] for h in history[1:]] == ["Synced", "Progressing"]
    assert section(out, "Events:") == ["(not shown: no NATS URL configured; pass --nats-url)"]


def test_describe_says_why_something_is_unplaced(repo: git.Repo, env: dict[str, str],
                                                 tmp_path: Path) -> None:
    sha = repo.head.commit.hexsha
    write_status(repo, tmp_path / "agent", report(sha, phase=Phase.DEGRADED))
    result = run(env, "describe", "deployment", "amazing-deployment", "--events-for", "0")
    assert result.exit_code == 0, result.output
    assert section(result.stdout, "Unplaced:") == [
        f"provider iot:ledcontroller/default: {UNPLACED}"]
    assert section(result.stdout, "Conditions:")[1].split()[:3] == [
        "Ready", "False", "Unplaceable"]
    assert "Events" not in result.stdout


def test_describe_a_bindingset_and_unknown_names(repo: git.Repo, env: dict[str, str],
                                                 tmp_path: Path) -> None:
    missing = run(env, "describe", "bs", "amazing-bindings")
    assert missing.exit_code == 2 and "no status yet" in missing.stderr
    sha = repo.head.commit.hexsha
    write_status(repo, tmp_path / "agent", report(sha), {sha: note(sha)})
    result = run(env, "describe", "bindingset", "amazing-bindings", "--events-for", "0")
    assert result.exit_code == 0, result.output
    assert "Bindings:     1/1 applied" in result.stdout
    assert section(result.stdout, "Placements:")[1].split()[:3] == [
        "binding", f"{ACTOR}->wascc:messaging/default", "vm1"]
    unknown = run(env, "describe", "deployment", "nope")
    assert unknown.exit_code == 1  # not found, as kubectl
    assert "deployment 'nope' not found" in unknown.stderr
    assert "Traceback" not in unknown.output


def test_unreachable_nats_skips_events_with_a_note(repo: git.Repo, env: dict[str, str],
                                                   tmp_path: Path) -> None:
    write_status(repo, tmp_path / "agent", report(repo.head.commit.hexsha))
    result = run(env, "--nats-url", "nats://127.0.0.1:1", "describe", "deploy",
                 "amazing-deployment")
    assert result.exit_code == 0, result.output
    [line] = section(result.stdout, "Events:")
    assert re.fullmatch(r"\(not shown: cannot reach NATS at nats://127\.0\.0\.1:1 "
                        + CAUSE + r"\)", line), line


def test_events_are_collected_with_the_credentials(repo: git.Repo, env: dict[str, str],
                                                   tmp_path: Path) -> None:
    """describe listens with the user, password (and CA) of the settings, not the bare
    URL: on a server that requires a password the bare URL is refused."""
    write_status(repo, tmp_path / "agent", report(repo.head.commit.hexsha))
    with NatsServer(data_dir=tmp_path / "nats-auth",
                    extra_args=["--user", "ctl", "--pass", "s3cret"]) as server:
        args = ("--nats-url", server.url, "describe", "deploy", "amazing-deployment",
                "--events-for", "0.2")
        result = run({**env, "LATTICECTL_NATS_PASSWORD": "s3cret"}, "--nats-user", "ctl",
                     *args)
        assert result.exit_code == 0, result.output
        assert section(result.stdout, "Events (live, 0.2s):") == ["<none>"], result.stdout
        refused = run({**env, "LATTICECTL_NATS_PASSWORD": "wrong"}, "--nats-user", "ctl",
                      *args)
    [line] = section(refused.stdout, "Events:")
    assert line.startswith(f"(not shown: cannot reach NATS at {server.url} ("), line
    assert "uthorization" in line, line


def test_help_says_the_events_are_live(env: dict[str, str]) -> None:
    text = " ".join(run(env, "describe", "deployment", "--help").stdout.split())
    assert "seen live meanwhile" in text
    assert "seen live while listening for --events-for seconds" in " ".join(
        run(env, "describe", "--help").stdout.split())


async def test_events_about_the_deployment_are_shown(
        repo: git.Repo, env: dict[str, str], tmp_path: Path, nats_server: NatsServer,
        nc: Client, lattice_id: str) -> None:
    write_status(repo, tmp_path / "agent", report(repo.head.commit.hexsha))
    with HostPool(nats_server.url, lattice_id, log_dir=tmp_path / "hosts") as pool:
        pool.spawn(labels={}, name="vm1")
        [host] = await eventually(lambda: ping(nc, lattice_id, timeout=0.3, expect=1),
                                  timeout=20, message="a host")
        described = asyncio.create_task(asyncio.to_thread(
            run, env, "--nats-url", nats_server.url, "--lattice", lattice_id,
            "describe", "deployment", "amazing-deployment", "--events-for", "3"))
        n = 0
        while not described.done():  # starts of ours and of someone else's, until it ends
            n += 1
            for actor, name in ((ACTOR, "amazing-deployment"), (OTHER_ACTOR, "other")):
                await command(nc, lattice_id, host.host_id, CommandOp.ACTOR_START,
                              StartActorCommand(
                    actor_id=actor, annotations={ANN_KIND: "Deployment", ANN_NAME: name,
                                                 "n": str(n)}))
        result = await described
    assert result.exit_code == 0, result.output
    events = section(result.stdout, "Events (live, 3s):")
    assert events, result.stdout
    for e in events:  # ours only: the other deployment's starts are left out
        assert "actor_started" in e and ACTOR[:12] in e and OTHER_ACTOR[:12] not in e, e
