"""End to end: the real agent under ``--verify-commits`` (real nats-server, host, git,
ssh-keygen and gpg), deciding from the head's signature whether a commit changes what runs.

SSH, with one host: a commit signed by a trusted key is Synced; an unsigned one and one
signed by an unknown key are Invalid with reason UntrustedCommit (note, status branch,
``latticectl status`` and ``history``) while what ran keeps running, untouched; ``apply``
signing as the repository's git config says is Synced again. OpenPGP, with no host at all
(an empty desired state is Synced by itself): an unsigned head is refused, a head signed
by a key of the keyring is Synced. ``latticectl up --verify-commits`` checks the policy
and hands it to the agent it starts, which refuses the unsigned seed commit. Every wait is
a poll with a deadline.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import git
import pytest
import yaml

from gitsync.apply import apply_manifests, load_inputs
from gitsync.status import read_note, read_status
from lattice.status import Phase, Reason, SignatureState
from tests import signing
from tests.cliutil import clean_env, run
from tests.helpers import eventually, eventually_sync
from tests.lattice_e2e import ACTOR, EventLog, Lattice, lat, repo, settled, where

__all__ = ["lat", "repo"]  # fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    signing.isolate(monkeypatch, tmp_path / "home")


def _deployment(replicas: int) -> str:
    return yaml.safe_dump({"kind": "Deployment", "metadata": {"name": "signed"},
                           "spec": {"actors": [{"id": ACTOR, "replicas": replicas}]}},
                          sort_keys=False)


async def _note(lat: Lattice, sha: str, phase: Phase, log: str = "") -> None:
    async def check() -> bool:
        note = await asyncio.to_thread(read_note, lat.repo, sha)
        return note is not None and note.phase == phase
    await eventually(check, timeout=30, message=f"note on {sha[:8]}: {phase}\n{log[-2000:]}")


async def test_only_commits_signed_by_a_trusted_ssh_key_change_what_runs(
        lat: Lattice, tmp_path: Path) -> None:
    alice = signing.ssh_key(tmp_path / "keys", "alice")
    mallory = signing.ssh_key(tmp_path / "keys", "mallory")
    signers = signing.allowed_signers(tmp_path / "allowed_signers", alice)
    work = Path(str(lat.repo.working_tree_dir))
    lat.pool.spawn(labels={"zone": "a"}, name="vm1")
    good = signing.commit(work, {"deployments/signed.yaml": _deployment(1)}, "one", key=alice)
    agent = lat.agent(extra_args=["--verify-commits", f"ssh:{signers}"])
    await _note(lat, good, Phase.SYNCED, agent.log())
    note = await asyncio.to_thread(read_note, lat.repo, good)
    assert note is not None and note.signature is not None
    assert (note.signature.state, note.signature.signer, note.signature.key) == (
        SignatureState.GOOD, alice.principal, alice.fingerprint)
    await lat.status_of(good, Phase.SYNCED)
    before = where(await settled(lat), actor=ACTOR)
    assert before == ["vm1"]

    async with EventLog(lat.nc, lat.lattice) as events:
        unsigned = signing.commit(work, {"deployments/signed.yaml": _deployment(2)}, "two")
        await _note(lat, unsigned, Phase.INVALID, agent.log())
        note = await asyncio.to_thread(read_note, lat.repo, unsigned)
        assert note is not None and note.reason == Reason.UNTRUSTED_COMMIT
        assert note.errors == [f"commit {unsigned[:8]} is not signed; only commits signed "
                               "by a trusted key are synced"], note.errors

        evil = signing.commit(work, {"deployments/signed.yaml": _deployment(3)}, "three",
                              key=mallory)
        await _note(lat, evil, Phase.INVALID, agent.log())
        note = await asyncio.to_thread(read_note, lat.repo, evil)
        assert note is not None and note.reason == Reason.UNTRUSTED_COMMIT
        assert note.signature is not None and note.signature.state is SignatureState.UNTRUSTED
        assert evil[:8] in note.message and mallory.fingerprint in note.message, note.message

        async def refused() -> bool:
            st = await asyncio.to_thread(read_status, lat.repo)
            return st is not None and (st.summary.phase, st.summary.reason,
                                       st.summary.attempted_revision,
                                       st.summary.applied_revision) == (
                Phase.INVALID, Reason.UNTRUSTED_COMMIT, evil, good)
        await eventually(refused, timeout=15, message="status: untrusted, the signed in force")
        # nothing the untrusted commits asked for ran: one replica, no start, no stop
        assert where(await settled(lat), actor=ACTOR) == before
        assert not [e for _, e in events.seen if e.event_type is not None
                    and e.event_type.value.startswith(("actor_", "provider_"))], events.seen

    env = clean_env(tmp_path) | {"LATTICECTL_REPO": str(work)}
    status = run(env, "status")
    assert "Phase:       Invalid (UntrustedCommit)" in status.stdout, status.stdout
    assert mallory.fingerprint in status.stdout
    history = run(env, "history")
    rows = {line.split()[0]: line for line in history.stdout.splitlines()[1:]}
    assert "Invalid (UntrustedCommit)" in rows[evil[:12]] and "untrusted" in rows[evil[:12]]
    assert "unsigned" in rows[unsigned[:12]] and "good" in rows[good[:12]], history.stdout

    with lat.repo.config_writer() as cw:  # apply signs as the user's git config says
        cw.set_value("commit", "gpgsign", "true")
        for key, value in alice.git_config().items():
            section, name = key.split(".")
            cw.set_value(section, name, value)
    applied = apply_manifests(work, load_inputs([("d.yaml", _deployment(2))]), push=False)
    assert applied.commit is not None
    await _note(lat, applied.commit, Phase.SYNCED, agent.log())
    assert where(await settled(lat), actor=ACTOR) == ["vm1", "vm1"]


async def test_an_openpgp_keyring_decides_with_no_host_at_all(
        lat: Lattice, tmp_path: Path) -> None:
    bob = signing.gpg_key("bob")
    try:
        keyring = tmp_path / "keyring.asc"
        keyring.write_bytes(bob.armored())
        work = Path(str(lat.repo.working_tree_dir))
        head = lat.repo.head.commit.hexsha  # the fixture's unsigned "init"
        agent = lat.agent(extra_args=["--verify-commits", f"gpg:{keyring}"])
        await _note(lat, head, Phase.INVALID, agent.log())
        note = await asyncio.to_thread(read_note, lat.repo, head)
        assert note is not None and note.reason == Reason.UNTRUSTED_COMMIT
        signed = signing.commit(work, {"README.md": "signed\n"}, "signed", key=bob)
        await _note(lat, signed, Phase.SYNCED, agent.log())
        note = await asyncio.to_thread(read_note, lat.repo, signed)
        assert note is not None and note.signature is not None
        assert (note.signature.state, note.signature.key) == (SignatureState.GOOD,
                                                              bob.fingerprint)
        homes = list((tmp_path / "agent-a" / "verify").glob("gnupg-*"))
        assert homes and all(h.stat().st_mode & 0o077 == 0 for h in homes)
    finally:
        bob.close()


def test_up_passes_the_policy_to_the_agent_it_starts(tmp_path: Path) -> None:
    signers = signing.allowed_signers(tmp_path / "allowed_signers",
                                      signing.ssh_key(tmp_path / "keys", "alice"))
    state_dir = tmp_path / "state"
    env = clean_env(tmp_path)
    ctl = ["--state-dir", str(state_dir), "--lattice", "upverify"]
    refused = run(env, *ctl, "up", "--verify-commits", f"ssh:{tmp_path}/nope")
    assert refused.exit_code == 2 and "cannot read the allowed signers file" in refused.output
    started = run(env, *ctl, "up", "--detach", "--insecure", "--hosts", "0",
                  "--verify-commits", f"ssh:{signers}")
    try:
        assert started.exit_code == 0, started.output
        state = json.loads((state_dir / "state.json").read_text())
        [agent] = [p for p in state["procs"] if p["role"] == "agent"]
        cmdline = Path(f"/proc/{agent['pid']}/cmdline").read_bytes().split(b"\0")
        assert cmdline[cmdline.index(b"--verify-commits") + 1] == f"ssh:{signers}".encode()
        seeded = git.Repo(state["repo"])  # its seed commit is not signed: refused
        head = seeded.head.commit.hexsha

        def untrusted() -> bool:
            note = read_note(seeded, head)
            return note is not None and note.reason == Reason.UNTRUSTED_COMMIT
        eventually_sync(untrusted, timeout=30, message="the seed commit is UntrustedCommit")
    finally:
        down = run(env, *ctl, "down")
    assert down.exit_code == 0, down.output
