"""gitsync.verify: the commit signature policy against real git, ssh-keygen and gpg.

Keys are made fresh (ed25519, no passphrase) in temporary directories; every test runs
with HOME, GNUPGHOME and the global git config pointed away from the user's. Cases: the
policy string, unsigned / trusted / unknown / removed / revoked keys for SSH and OpenPGP,
a signature of the other kind, the user's and the repository's own config trusting a key
the policy does not, the cache, GitSource.evaluate refusing before reading a manifest,
``apply`` signing as the user's config says, and what ``history`` shows without a policy.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from gitsync.apply import apply_manifests, load_inputs
from gitsync.source import GitSource
from gitsync.verify import (
    CommitVerifier,
    PolicyError,
    Scheme,
    SignaturePolicy,
    parse_policy,
    signature_states,
    verdict_of,
)
from lattice.status import Phase, Reason, SignatureState
from tests import signing
from tests.gitrepo import DEPLOYMENT, init_repo
from tests.signing import GpgKey, SshKey

MANIFEST = {"deployments/amazing-deployment.yaml": DEPLOYMENT}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    signing.isolate(monkeypatch, tmp_path / "home")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    folder = tmp_path_factory.mktemp("ssh")
    return {n: signing.ssh_key(folder, n) for n in ("alice", "mallory")}


@pytest.fixture(scope="module")
def pgp() -> Iterator[dict[str, GpgKey]]:
    made = {n: signing.gpg_key(n) for n in ("bob", "eve")}
    yield made
    for k in made.values():
        k.close()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[git.Repo]:
    r = init_repo(tmp_path / "repo")
    yield r
    r.close()


def _wt(repo: git.Repo) -> Path:
    return Path(str(repo.working_tree_dir))


def _ssh_verifier(tmp_path: Path, *trusted: SshKey) -> CommitVerifier:
    path = signing.allowed_signers(tmp_path / "allowed_signers", *trusted)
    return CommitVerifier(SignaturePolicy(Scheme.SSH, path), data_dir=tmp_path / "verify")


def _gpg_verifier(tmp_path: Path, *trusted: GpgKey) -> CommitVerifier:
    path = tmp_path / "keyring.asc"
    path.write_bytes(b"".join(k.armored() for k in trusted))
    return CommitVerifier(SignaturePolicy(Scheme.GPG, path), data_dir=tmp_path / "verify")


# ---------------------------------------------------------------- the policy string

def test_parse_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_policy("ssh:signers") == SignaturePolicy(Scheme.SSH, tmp_path / "signers")
    assert parse_policy("GPG:/k.asc") == SignaturePolicy(Scheme.GPG, Path("/k.asc"))
    assert str(parse_policy("gpg:/k.asc")) == "gpg:/k.asc"
    for bad, says in [("x509:/f", "unknown scheme"), ("/just/a/file", "unknown scheme"),
                      ("ssh:", "no file after 'ssh:'")]:
        with pytest.raises(PolicyError, match=says) as exc:
            parse_policy(bad)
        assert "ssh:ALLOWED_SIGNERS" in exc.value.message


def test_a_missing_file_or_a_keyring_without_keys_stops_the_agent_at_start(
        tmp_path: Path) -> None:
    missing = CommitVerifier(parse_policy(f"ssh:{tmp_path}/nope"), data_dir=tmp_path / "v")
    with pytest.raises(PolicyError, match=r"cannot read the allowed signers file .*/nope"):
        missing.prepare()
    (tmp_path / "empty.asc").write_text("not a key\n")
    empty = CommitVerifier(parse_policy(f"gpg:{tmp_path}/empty.asc"), data_dir=tmp_path / "v")
    with pytest.raises(PolicyError, match="keyring"):
        empty.prepare()


@pytest.mark.parametrize(("code", "state"), [
    ("G", SignatureState.GOOD), ("N", SignatureState.UNSIGNED), ("B", SignatureState.BAD),
    ("U", SignatureState.UNTRUSTED), ("E", SignatureState.UNTRUSTED),
    ("X", SignatureState.UNTRUSTED), ("Y", SignatureState.UNTRUSTED),
    ("R", SignatureState.UNTRUSTED),
])
def test_git_letters_to_states(code: str, state: SignatureState) -> None:
    v = verdict_of("a" * 40, code, "", "SHA256:k", "")
    assert v.state is state
    assert v.trusted is (code == "G")


def test_a_good_signature_of_the_other_kind_is_not_trusted() -> None:
    ssh = SignaturePolicy(Scheme.SSH, Path("/signers"))
    gpg = SignaturePolicy(Scheme.GPG, Path("/k.asc"))
    assert verdict_of("a" * 40, "G", "a", "SHA256:k", "", policy=ssh).trusted
    assert not verdict_of("a" * 40, "G", "a", "C217" * 10, "", policy=ssh).trusted
    assert not verdict_of("a" * 40, "G", "a", "SHA256:k", "", policy=gpg).trusted


# ---------------------------------------------------------------- SSH

def test_ssh_unsigned_trusted_and_unknown(repo: git.Repo, tmp_path: Path,
                                          keys: dict[str, SshKey]) -> None:
    alice, mallory = keys["alice"], keys["mallory"]
    v = _ssh_verifier(tmp_path, alice)
    v.prepare()
    unsigned = signing.commit(_wt(repo), MANIFEST, "unsigned")
    good = signing.commit(_wt(repo), {"a.txt": "1"}, "signed", key=alice)
    unknown = signing.commit(_wt(repo), {"a.txt": "2"}, "by mallory", key=mallory)

    got = v.verify(repo.git_dir, unsigned)
    assert got.state is SignatureState.UNSIGNED
    assert got.describe().startswith(f"commit {unsigned[:8]} is not signed")

    got = v.verify(repo.git_dir, good)
    assert (got.state, got.signer, got.key) == (SignatureState.GOOD, alice.principal,
                                                 alice.fingerprint)

    got = v.verify(repo.git_dir, unknown)
    assert got.state is SignatureState.UNTRUSTED
    msg = got.describe()
    assert unknown[:8] in msg and mallory.fingerprint in msg, msg
    assert f"not in the allowed signers file {tmp_path}/allowed_signers" in msg


def test_ssh_a_key_removed_from_the_file_stops_counting(repo: git.Repo, tmp_path: Path,
                                                        keys: dict[str, SshKey]) -> None:
    alice = keys["alice"]
    v = _ssh_verifier(tmp_path, alice, keys["mallory"])
    sha = signing.commit(_wt(repo), MANIFEST, "signed", key=alice)
    assert v.verify(repo.git_dir, sha).trusted
    signing.allowed_signers(tmp_path / "allowed_signers", keys["mallory"])
    assert not v.verify(repo.git_dir, sha).trusted  # cached by content: checked again
    (tmp_path / "allowed_signers").unlink()
    gone = v.verify(repo.git_dir, sha)  # fail closed
    assert not gone.trusted and "cannot read the allowed signers file" in gone.describe()


def test_neither_the_users_nor_the_repositorys_config_adds_trust(
        repo: git.Repo, tmp_path: Path, keys: dict[str, SshKey],
        monkeypatch: pytest.MonkeyPatch) -> None:
    alice, mallory = keys["alice"], keys["mallory"]
    evil = signing.allowed_signers(tmp_path / "evil_signers", mallory)
    user_config = tmp_path / "gitconfig"
    user_config.write_text(f"[gpg \"ssh\"]\n\tallowedSignersFile = {evil}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(user_config))
    with repo.config_writer() as cw:
        cw.set_value('gpg "ssh"', "allowedSignersFile", str(evil))
    v = _ssh_verifier(tmp_path, alice)
    sha = signing.commit(_wt(repo), MANIFEST, "by mallory", key=mallory)
    assert v.verify(repo.git_dir, sha).state is SignatureState.UNTRUSTED


# ---------------------------------------------------------------- OpenPGP

def test_gpg_trusted_and_unknown(repo: git.Repo, tmp_path: Path, pgp: dict[str, GpgKey],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bob, eve = pgp["bob"], pgp["eve"]
    v = _gpg_verifier(tmp_path, bob)
    v.prepare()
    homes = list((tmp_path / "verify").glob("gnupg-*"))
    assert homes and all(stat.S_IMODE(h.stat().st_mode) == 0o700 for h in homes)
    good = signing.commit(_wt(repo), MANIFEST, "by bob", key=bob)
    unknown = signing.commit(_wt(repo), {"a.txt": "1"}, "by eve", key=eve)

    got = v.verify(repo.git_dir, good)
    assert (got.state, got.signer, got.key) == (SignatureState.GOOD, bob.uid, bob.fingerprint)

    got = v.verify(repo.git_dir, unknown)
    assert got.state is SignatureState.UNTRUSTED
    assert eve.fingerprint in got.describe(), got.describe()  # the full fingerprint

    # a signer's own keyring on the machine (GNUPGHOME) is not the policy's
    monkeypatch.setenv("GNUPGHOME", str(eve.home))
    assert not CommitVerifier(v.policy, data_dir=tmp_path / "v2").verify(
        repo.git_dir, unknown).trusted


def test_gpg_a_revoked_key_is_untrusted(repo: git.Repo, tmp_path: Path) -> None:
    carol = signing.gpg_key("carol")
    try:
        v = _gpg_verifier(tmp_path, carol)
        sha = signing.commit(_wt(repo), MANIFEST, "by carol", key=carol)
        assert v.verify(repo.git_dir, sha).trusted
        carol.revoke()
        (tmp_path / "keyring.asc").write_bytes(carol.armored())  # re-imported: new content
        got = v.verify(repo.git_dir, sha)
        assert got.state is SignatureState.UNTRUSTED and "revoked" in got.describe()
        assert carol.fingerprint in got.describe()
        assert len(list((tmp_path / "verify").glob("gnupg-*"))) == 1  # the old home is gone
    finally:
        carol.close()


def test_a_signature_of_the_other_kind_is_untrusted(
        repo: git.Repo, tmp_path: Path, keys: dict[str, SshKey],
        pgp: dict[str, GpgKey]) -> None:
    by_ssh = signing.commit(_wt(repo), MANIFEST, "ssh", key=keys["alice"])
    by_gpg = signing.commit(_wt(repo), {"a.txt": "1"}, "gpg", key=pgp["bob"])
    (tmp_path / "g").mkdir()
    (tmp_path / "s").mkdir()
    gpg_policy = _gpg_verifier(tmp_path / "g", pgp["bob"])
    ssh_policy = _ssh_verifier(tmp_path / "s", keys["alice"])
    assert not gpg_policy.verify(repo.git_dir, by_ssh).trusted
    assert not ssh_policy.verify(repo.git_dir, by_gpg).trusted
    assert gpg_policy.verify(repo.git_dir, by_gpg).trusted
    assert ssh_policy.verify(repo.git_dir, by_ssh).trusted


# ---------------------------------------------------------------- cache, source

def test_verdicts_are_cached_per_commit(repo: git.Repo, tmp_path: Path,
                                        keys: dict[str, SshKey]) -> None:
    v = _ssh_verifier(tmp_path, keys["alice"])
    sha = signing.commit(_wt(repo), MANIFEST, "signed", key=keys["alice"])
    t0 = time.perf_counter()
    first = v.verify(repo.git_dir, sha)
    t1 = time.perf_counter()
    again = v.verify(repo.git_dir, sha)
    t2 = time.perf_counter()
    assert first == again and v.checks == 1
    print(f"verify: {1000 * (t1 - t0):.1f} ms, cached {1000 * (t2 - t1):.3f} ms")
    assert t2 - t1 < 0.01


def test_source_refuses_an_untrusted_head_before_reading_it(
        repo: git.Repo, tmp_path: Path, keys: dict[str, SshKey]) -> None:
    v = _ssh_verifier(tmp_path, keys["alice"])
    unsigned = signing.commit(_wt(repo), MANIFEST, "unsigned")
    src = GitSource.open(str(_wt(repo)), data_dir=tmp_path / "data")
    try:
        ev = src.evaluate(unsigned, verify=v)
        assert ev.desired is None and ev.reason == Reason.UNTRUSTED_COMMIT
        assert ev.errors == [ev.signature.describe()] if ev.signature else False
        assert src.evaluations == 0  # not a single manifest was parsed
        assert src.evaluate(unsigned).valid  # without a policy it is just a commit
        signed = signing.commit(_wt(repo), {"a.txt": "1"}, "signed", key=keys["alice"])
        ev = src.evaluate(signed, verify=v)
        assert ev.valid and ev.signature is not None and ev.signature.trusted
    finally:
        src.close()


# ---------------------------------------------------------------- apply, history

def test_apply_signs_when_the_repository_config_says_so(
        repo: git.Repo, tmp_path: Path, keys: dict[str, SshKey]) -> None:
    alice = keys["alice"]
    v = _ssh_verifier(tmp_path, alice)
    signing.commit(_wt(repo), {"README.md": "x"}, "init")
    docs = load_inputs([("d.yaml", DEPLOYMENT)])
    unsigned = apply_manifests(_wt(repo), docs, push=False)
    assert unsigned.commit and v.verify(repo.git_dir, unsigned.commit).state is \
        SignatureState.UNSIGNED
    with repo.config_writer() as cw:
        cw.set_value("commit", "gpgsign", "true")
        cw.set_value("gpg", "format", "ssh")
        cw.set_value("user", "signingkey", str(alice.private))
    docs = load_inputs([("d.yaml", DEPLOYMENT.replace("amazing-deployment", "second"))])
    signed = apply_manifests(_wt(repo), docs, push=False)
    assert signed.commit and v.verify(repo.git_dir, signed.commit).trusted


def test_history_without_a_policy_shows_what_the_readers_git_says(
        repo: git.Repo, tmp_path: Path, keys: dict[str, SshKey]) -> None:
    unsigned = signing.commit(_wt(repo), MANIFEST, "unsigned")
    signed = signing.commit(_wt(repo), {"a.txt": "1"}, "signed", key=keys["alice"])
    states = signature_states(repo.git_dir, [signed, unsigned])
    assert states[unsigned].state is SignatureState.UNSIGNED
    assert states[signed].state is SignatureState.UNTRUSTED  # the reader trusts no one yet
    signing.allowed_signers(tmp_path / "mine", keys["alice"])
    with repo.config_writer() as cw:
        cw.set_value('gpg "ssh"', "allowedSignersFile", str(tmp_path / "mine"))
    assert signature_states(repo.git_dir, [signed])[signed].state is SignatureState.GOOD


# ---------------------------------------------------------------- latticectl status

def test_status_shows_a_refused_head_with_no_status_branch(
        repo: git.Repo, tmp_path: Path) -> None:
    from tests.cliutil import clean_env, note, run, write_status

    sha = signing.commit(_wt(repo), MANIFEST, "unsigned")
    why = f"commit {sha[:8]} is not signed; only commits signed by a trusted key are synced"
    refused = note(sha, Phase.INVALID, errors=[why]).model_copy(
        update={"reason": Reason.UNTRUSTED_COMMIT, "entities": []})
    write_status(repo, tmp_path / "agent", None, {sha: refused})
    env = clean_env(tmp_path) | {"LATTICECTL_REPO": str(_wt(repo))}
    out = run(env, "status")
    assert out.exit_code == 1, out.output
    assert "Phase:       Invalid (UntrustedCommit)" in out.stdout
    assert "nothing applied yet" in out.stdout and why in out.stdout


def test_status_prefers_a_newer_refusal_of_head_over_an_old_synced_summary(
        repo: git.Repo, tmp_path: Path) -> None:
    from tests.cliutil import clean_env, note, report, run, write_status

    sha = signing.commit(_wt(repo), MANIFEST, "unsigned")
    write_status(repo, tmp_path / "agent", report(sha), {sha: note(sha)})  # before the policy
    refused = note(sha, Phase.INVALID, errors=["commit is not signed"]).model_copy(
        update={"reason": Reason.UNTRUSTED_COMMIT})
    write_status(repo, tmp_path / "agent", None, {sha: refused})  # an agent restarted with it
    env = clean_env(tmp_path) | {"LATTICECTL_REPO": str(_wt(repo))}
    out = run(env, "status")
    assert out.exit_code == 1, out.output
    assert "Phase:       Synced (HEAD: Invalid, UntrustedCommit)" in out.stdout, out.stdout
    assert "commit is not signed" in out.stdout


def test_a_commit_git_cannot_check_is_untrusted_not_an_exception(
        repo: git.Repo, tmp_path: Path, keys: dict[str, SshKey]) -> None:
    v = _ssh_verifier(tmp_path, keys["alice"])
    got = v.verify(repo.git_dir, "0123456789abcdef" * 2 + "01234567")  # no such commit
    assert got.state is SignatureState.UNTRUSTED and "git could not check it" in got.describe()
    assert v.checks == 1 and not v._cache


def test_gpg_verifies_under_a_data_dir_too_deep_for_gpg_sockets(
        repo: git.Repo, tmp_path: Path, pgp: dict[str, GpgKey]) -> None:
    """gpg names its agent socket after the home directory, and a unix socket path must
    fit in 108 bytes: an agent whose --data-dir is deep still imports and verifies."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    v = _gpg_verifier(deep, pgp["bob"])
    v.prepare()
    assert len(str(next((deep / "verify").glob("gnupg-*")))) > 108
    good = signing.commit(_wt(repo), MANIFEST, "by bob", key=pgp["bob"])
    got = v.verify(repo.git_dir, good)
    assert (got.state, got.key) == (SignatureState.GOOD, pgp["bob"].fingerprint), got
