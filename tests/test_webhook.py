"""Forge webhooks, end to end: a real agent on a *remote* repository (a bare repo by
``file://`` URL, so the agent must fetch), a real nats-server and host, and HTTP on
loopback to the agent's ``--webhook-addr``.

The agent's ``--interval`` is 5 minutes: within a test only a webhook explains a fetch.
A push signed the GitHub, GitLab or Gitea way is Synced within seconds; a wrong or
missing signature is 401 and the push stays unseen; a push to another branch is ignored;
a body over 1 MiB is 413. The pure parts (:func:`reconciler.webhook.authentic`,
:func:`reconciler.webhook.judge`) are checked as a table too.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import git
import pytest
from multidict import CIMultiDict
from nats.aio.client import Client

from gitsync.status import read_note
from lattice.localnats import NatsServer
from lattice.natsutil import connect
from lattice.status import Phase
from reconciler.webhook import MAX_BODY, Forge, authentic, judge, sign
from tests.agentproc import AgentProcess, spawn_agent
from tests.gitrepo import OTHER_ACTOR, commit_files, deployment, file_url, make_remote
from tests.helpers import eventually
from tests.hostproc import HostPool, ping

SECRET = "it's-a-secret-9d1f"
LISTENING = re.compile(r"webhook receiver on (http://127\.0\.0\.1:\d+/webhook)")


@dataclass
class Forged:
    bare: Path
    work: git.Repo
    agent: AgentProcess
    url: str  # the agent's webhook URL

    def push(self, name: str, branch: str = "main") -> str:
        sha = commit_files(self.work, {f"deployments/{name}.yaml": deployment(name,
                                                                              OTHER_ACTOR)},
                           f"add {name}")
        self.work.git.push("-q", "origin", f"HEAD:refs/heads/{branch}")
        return sha

    def noted(self, sha: str, phase: Phase) -> bool:
        bare = git.Repo(self.bare)
        try:
            note = read_note(bare, sha)
        finally:
            bare.close()
        return note is not None and note.phase == phase

    async def post(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        async with aiohttp.ClientSession() as s, s.post(
                self.url, data=body, headers={"Content-Type": "application/json", **headers}
        ) as resp:
            return resp.status, await resp.json()


def push_body(branch: str = "main", after: str = "0" * 40) -> bytes:
    return json.dumps({"ref": f"refs/heads/{branch}", "after": after,
                       "repository": {"full_name": "ops/gitops"}}).encode()


def github(body: bytes, *, secret: str = SECRET, event: str = "push") -> dict[str, str]:
    return {"X-GitHub-Event": event,
            "X-Hub-Signature-256": f"sha256={sign(secret.encode(), body)}"}


@pytest.fixture
async def forged(nats_server: NatsServer, tmp_path: Path,
                 lattice_id: str) -> AsyncIterator[Forged]:
    from tests import agentproc

    bare, work = make_remote(tmp_path, {"deployments/base.yaml": deployment("base")})
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(SECRET + "\n")  # as `echo` writes it: the newline is not part
    pool = HostPool(nats_server.url, lattice_id, log_dir=tmp_path / "hosts")
    nc = await connect(nats_server.url)
    try:
        pool.spawn(labels={}, name="vm1")
        await eventually(lambda: _hosts(nc, lattice_id), timeout=20,
                         message="the host answers ping")
        agent = spawn_agent(repo=file_url(bare), nats_url=nats_server.url, lattice=lattice_id,
                            data_dir=tmp_path / "agent", interval=300.0, resync=30.0,
                            extra_args=["--webhook-addr", "127.0.0.1:0",
                                        "--webhook-secret-file", str(secret_file)])
        found = await eventually(lambda: LISTENING.search(agent.log()), timeout=20,
                                 message="the agent's webhook receiver is up")
        f = Forged(bare, work, agent, found.group(1))
        first = work.head.commit.hexsha
        await eventually(lambda: f.noted(first, Phase.SYNCED), timeout=30,
                         message=lambda: f"first commit Synced\n{agent.log()[-3000:]}")
        yield f
        assert SECRET not in agent.log()
    finally:
        agentproc.stop_all()
        pool.stop()
        await nc.close()


async def _hosts(nc: Client, lattice: str) -> bool:
    return len(await ping(nc, lattice)) >= 1


async def _unseen_for(f: Forged, sha: str, seconds: float) -> None:
    """``sha`` is not noted within ``seconds`` (a fetch after a webhook takes ~0.1 s)."""
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(eventually(lambda: f.noted(sha, Phase.SYNCED),
                                          timeout=seconds + 1), seconds)


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_github_push_fetches_now_and_bad_signatures_fetch_nothing(
        forged: Forged) -> None:
    sha = forged.push("second")
    body = push_body(after=sha)
    assert await forged.post({"X-GitHub-Event": "push"}, body) == (
        401, {"error": "wrong or missing signature"})
    assert (await forged.post(github(body, secret="not-the-secret"), body))[0] == 401
    tampered = push_body(after="1" * 40)  # signed body, different payload
    assert (await forged.post(github(body), tampered))[0] == 401
    assert (await forged.post({**github(body), "X-Hub-Signature-256": sign(
        SECRET.encode(), body)}, body))[0] == 401  # GitHub's form needs its sha256= prefix
    other = push_body("feature", sha)
    status, answer = await forged.post(github(other), other)
    assert (status, answer["status"]) == (202, "ignored: push to refs/heads/feature, "
                                               "the agent follows refs/heads/main")
    ping_body = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    assert await forged.post(github(ping_body, event="ping"), ping_body) == (
        200, {"status": "pong"})
    await _unseen_for(forged, sha, 1.5)
    assert "head of main is " + sha[:12] not in forged.agent.log()

    started = time.monotonic()
    assert await forged.post(github(body), body) == (202, {"status": "fetching main"})
    await eventually(lambda: forged.noted(sha, Phase.SYNCED), timeout=10,
                     message=lambda: f"Synced after the webhook\n{forged.agent.log()[-3000:]}")
    print(f"webhook -> Synced note {time.monotonic() - started:.2f}s")
    log = forged.agent.log()
    assert log.count("refused: wrong or missing signature") == 4
    assert log.count("fetching now") == 1


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_gitlab_and_gitea_pushes_fetch_now(forged: Forged) -> None:
    sha = forged.push("from-gitlab")
    body = push_body(after=sha)
    assert (await forged.post({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"},
                              body))[0] == 401
    assert (await forged.post({"X-Gitlab-Event": "Push Hook"}, body))[0] == 401
    await _unseen_for(forged, sha, 1.0)
    assert await forged.post({"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET},
                             body) == (202, {"status": "fetching main"})
    await eventually(lambda: forged.noted(sha, Phase.SYNCED), timeout=10,
                     message="Synced after GitLab's webhook")

    sha = forged.push("from-gitea")
    body = push_body(after=sha)
    assert (await forged.post({"X-Gitea-Event": "push", "X-Gitea-Signature": "00" * 32},
                              body))[0] == 401
    await _unseen_for(forged, sha, 1.0)
    assert await forged.post({"X-Gitea-Event": "push",
                              "X-Gitea-Signature": sign(SECRET.encode(), body)},
                             body) == (202, {"status": "fetching main"})
    await eventually(lambda: forged.noted(sha, Phase.SYNCED), timeout=10,
                     message="Synced after Gitea's webhook")


@pytest.mark.e2e
@pytest.mark.timeout(120)
async def test_oversized_and_foreign_requests_are_refused(forged: Forged) -> None:
    big = b"{" + b" " * MAX_BODY + b"}"
    status, answer = await forged.post(github(big), big)
    assert status == 413 and "larger than 1048576 bytes" in answer["error"]
    status, answer = await forged.post({}, push_body())
    assert status == 400 and "not a forge's webhook" in answer["error"]
    async with aiohttp.ClientSession() as s, s.get(forged.url) as resp:
        assert resp.status == 405
    assert forged.agent.alive()


def _h(**kw: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in kw.items()})


@pytest.mark.parametrize(("forge", "headers", "ok"), [
    (Forge.GITHUB, _h(X_Hub_Signature_256="sha256=" + sign(b"k", b"body")), True),
    (Forge.GITHUB, _h(X_Hub_Signature_256="sha256=" + sign(b"k", b"body").upper()), True),
    (Forge.GITHUB, _h(X_Hub_Signature_256="sha1=" + sign(b"k", b"body")), False),
    (Forge.GITHUB, _h(X_Hub_Signature_256="sha256=" + sign(b"k", b"other")), False),
    (Forge.GITHUB, _h(), False),
    (Forge.GITEA, _h(X_Gitea_Signature=sign(b"k", b"body")), True),
    (Forge.GITEA, _h(X_Forgejo_Signature=sign(b"k", b"body")), True),
    (Forge.GITEA, _h(X_Gitea_Signature="sha256=" + sign(b"k", b"body")), False),
    (Forge.GITLAB, _h(X_Gitlab_Token="k"), True),
    (Forge.GITLAB, _h(X_Gitlab_Token="k "), False),
    (Forge.GITLAB, _h(X_Gitlab_Token=""), False),
])
def test_authentic(forge: Forge, headers: CIMultiDict[str], ok: bool) -> None:
    assert authentic(forge, headers, b"body", b"k") is ok
    assert authentic(forge, headers, b"body", b"") is False  # no secret: nobody is


@pytest.mark.parametrize(("forge", "event", "body", "status", "fetch"), [
    (Forge.GITHUB, "ping", b"{}", 200, False),
    (Forge.GITHUB, "push", push_body("main"), 202, True),
    (Forge.GITLAB, "Push Hook", push_body("main"), 202, True),
    (Forge.GITEA, "push", push_body("main"), 202, True),
    (Forge.GITHUB, "push", push_body("dev"), 202, False),
    (Forge.GITHUB, "push", b'{"ref": "refs/tags/main"}', 202, False),
    (Forge.GITLAB, "Tag Push Hook", push_body("main"), 202, False),
    (Forge.GITHUB, "push", b"ref=refs/heads/main", 400, False),  # form-encoded
    (Forge.GITHUB, "push", b"[]", 400, False),
])
def test_judge(forge: Forge, event: str, body: bytes, status: int, fetch: bool) -> None:
    verdict = judge(forge, event, body, "main")
    assert (verdict.status, verdict.fetch) == (status, fetch), verdict.reason


@pytest.mark.parametrize(("args", "env", "says"), [
    (["--webhook-addr", "127.0.0.1:0"], {}, "--webhook-addr needs a secret"),
    (["--webhook-addr", "127.0.0.1:0"], {"VINCULUM_WEBHOOK_SECRET": ""},
     "--webhook-addr needs a secret"),
    (["--webhook-addr", "nope"], {"VINCULUM_WEBHOOK_SECRET": "s"}, "not HOST:PORT: 'nope'"),
    (["--alert-url", "ftp://x"], {}, "'ftp://x' is not an http(s) URL"),
])
def test_flags_refused(tmp_path: Path, args: list[str], env: dict[str, str],
                       says: str) -> None:
    from click.testing import CliRunner

    from reconciler.main import main

    result = CliRunner().invoke(main, ["--repo", str(tmp_path), *args],
                                env={"VINCULUM_WEBHOOK_SECRET": None, **env})
    assert result.exit_code == 2 and says in result.output, result.output


def test_an_address_in_use_is_one_line(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from tests.gitrepo import init_repo

    init_repo(tmp_path / "repo")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler.main", "--repo", str(tmp_path / "repo"),
             "--data-dir", str(tmp_path / "data"), "--webhook-addr", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "VINCULUM_WEBHOOK_SECRET": SECRET})
    assert proc.returncode == 1, proc.stderr
    assert f"Error: --webhook-addr 127.0.0.1:{port}: " in proc.stderr
    assert "Traceback" not in proc.stderr and SECRET not in proc.stderr
