"""Commit signature policy: only a commit signed by a trusted key may change what runs.

``vinculum --verify-commits ssh:ALLOWED_SIGNERS`` (git's allowed-signers format) or
``--verify-commits gpg:KEYRING`` (armored OpenPGP public keys) is a
:class:`SignaturePolicy`: pure data, parsed by :func:`parse_policy`. A
:class:`CommitVerifier` applies it to the head of the followed branch (as Flux's
``verify`` mode ``HEAD`` does) before :meth:`gitsync.source.GitSource.evaluate` reads a
single manifest, so trust is decided here, in gitsync, before a desired state exists; the
reconciler only ever sees verified state.

Verification is the real ``git``, run with the user's and the machine's git config shut
out (:data:`gitsync.gitcmd.ISOLATED_ENV`) and the policy passed per call (``-c
gpg.ssh.allowedSignersFile=...``). For OpenPGP the keyring is imported into a private
``GNUPGHOME`` under the agent's data dir (mode 0700, ``trust-model always``: every key of
the file is trusted, no other is), once per content of the file (a changed file gets a new
home, so a removed or revoked key stops counting), so neither the machine's keyring nor
``HOME`` ever matters. Verdicts are cached per commit and policy content (bounded).

:func:`verdict_of` (git's ``%G?`` letter to a :class:`Verdict`) and
:meth:`Verdict.describe` are pure; :func:`signature_states` is what ``latticectl history``
asks when it knows no policy: what git says under the reader's own config.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from gitsync.errors import GitCommandError, GitSyncError
from gitsync.gitcmd import ISOLATED_ENV, StrPath, run_git
from lattice.errors import PermanentError
from lattice.status import CommitSignature, SignatureState

log = logging.getLogger(__name__)

CACHE_SIZE = 1024
#: git's pretty format for one commit's signature: %G? letter, signer, fingerprint, key id.
_FORMAT = "%G?%x00%GS%x00%GF%x00%GK"
_ERRSIG = re.compile(r"^\[GNUPG:\] ERRSIG (\S+)(?: \S+){5}(?: ([0-9A-Fa-f]{32,}))?", re.M)
#: gpg.conf of the private home: trust exactly the imported keys; never reach a network,
#: never start an agent (verification needs neither).
_GPG_CONF = "trust-model always\nno-auto-key-retrieve\nno-autostart\n"


class Scheme(StrEnum):
    SSH = "ssh"
    GPG = "gpg"


class PolicyError(GitSyncError, PermanentError):
    """The signature policy cannot be used as given (unknown scheme, missing file, a
    keyring with no key): nothing would ever be trusted, so the agent refuses to start."""


@dataclass(frozen=True)
class SignaturePolicy:
    """Which keys are trusted: the allowed-signers file (``ssh``) or the armored keyring
    (``gpg``) at ``path``."""

    scheme: Scheme
    path: Path

    def __str__(self) -> str:
        return f"{self.scheme}:{self.path}"

    @property
    def what(self) -> str:
        """The file's role, for messages."""
        return "allowed signers file" if self.scheme is Scheme.SSH else "keyring"

    def read(self) -> bytes:
        """The file's content; :class:`PolicyError` when it cannot be read."""
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise PolicyError(f"--verify-commits: cannot read the {self.what} {self.path}: "
                              f"{exc.strerror or exc}") from None


def parse_policy(text: str) -> SignaturePolicy:
    """``ssh:PATH`` or ``gpg:PATH`` to a policy (the path made absolute, not read). Pure
    but for the current directory; raises :class:`PolicyError` saying what is accepted."""
    scheme, sep, path = text.partition(":")
    usage = "use ssh:ALLOWED_SIGNERS (git's allowed-signers file) or gpg:KEYRING " \
            "(armored OpenPGP public keys)"
    if not sep or scheme.lower() not in tuple(Scheme):
        raise PolicyError(f"--verify-commits {text!r}: unknown scheme; {usage}")
    if not path.strip():
        raise PolicyError(f"--verify-commits {text!r}: no file after '{scheme}:'; {usage}")
    return SignaturePolicy(Scheme(scheme.lower()), Path(path).expanduser().absolute())


@dataclass(frozen=True)
class Verdict:
    """The signature on one commit and what it is worth."""

    commit: str
    state: SignatureState
    code: str = ""  #: git's ``%G?`` letter (G, U, N, B, E, X, Y, R), or "" when unchecked
    signer: str = ""
    key: str = ""
    problem: str = ""  #: why the key is not trusted ("revoked", "not in the keyring ...")

    @property
    def trusted(self) -> bool:
        return self.state is SignatureState.GOOD

    def record(self) -> CommitSignature:
        """The verdict as the note on the commit records it."""
        return CommitSignature(state=self.state, signer=self.signer, key=self.key)

    def describe(self) -> str:
        """One line naming the commit, the signer and the key. Pure."""
        short = self.commit[:8]
        by = f" by {self.signer}" if self.signer else ""
        key = f" with key {self.key}" if self.key else ""
        if self.state is SignatureState.GOOD:
            return f"commit {short} has a good signature{by}{key}"
        if self.state is SignatureState.UNSIGNED:
            return f"commit {short} is not signed; only commits signed by a trusted key " \
                   "are synced"
        if self.state is SignatureState.BAD:
            return f"commit {short} has a bad signature{by}{key}: the commit is not what " \
                   "was signed"
        return f"commit {short} is signed{by}{key}, {self.problem or 'an untrusted key'}"


_PROBLEMS = {
    "U": "which is not trusted",
    "E": "which cannot be checked",
    "X": "but the signature has expired",
    "Y": "but the key has expired",
    "R": "but the key has been revoked",
}


def verdict_of(commit: str, code: str, signer: str, fingerprint: str, key_id: str, *,
               policy: SignaturePolicy | None = None) -> Verdict:
    """git's view of a signature (``%G? %GS %GF %GK``) as a :class:`Verdict` under
    ``policy`` (None: under the reader's own git config). Only ``G`` is good, and under a
    policy only for a signature of the policy's kind. Pure."""
    key = fingerprint or key_id
    state = {"G": SignatureState.GOOD, "N": SignatureState.UNSIGNED,
             "B": SignatureState.BAD}.get(code, SignatureState.UNTRUSTED)
    problem = _PROBLEMS.get(code, "")
    if policy is not None:  # U, E: no key of the policy; G of the other kind: cannot be
        of_kind = key.startswith("SHA256:") == (policy.scheme is Scheme.SSH)
        if code in ("U", "E") or (code == "G" and not of_kind):
            state = SignatureState.UNTRUSTED
            problem = f"which is not in the {policy.what} {policy.path}"
    return Verdict(commit, state, code, signer, key, problem)


class CommitVerifier:
    """Applies one :class:`SignaturePolicy`; thread-safe. ``data_dir`` holds the private
    GNUPGHOMEs (``gnupg-<digest>``), created with mode 0700."""

    def __init__(self, policy: SignaturePolicy, *, data_dir: Path,
                 cache_size: int = CACHE_SIZE) -> None:
        self.policy = policy
        self.data_dir = data_dir
        self._cache: OrderedDict[tuple[str, str], Verdict] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._home: tuple[str, Path] | None = None  # (digest of the keyring, its home)
        self.checks = 0  #: verifications that ran git (cache misses)

    def prepare(self) -> None:
        """Check the policy now (file readable, tools present, keys in a keyring), so a
        bad one stops the agent at start rather than refusing every commit later."""
        tool = "ssh-keygen" if self.policy.scheme is Scheme.SSH else "gpg"
        if shutil.which(tool) is None:
            raise PolicyError(f"--verify-commits {self.policy.scheme}: needs {tool}, which "
                              "is not on PATH (install openssh-client or gnupg)")
        with self._lock:
            self._gnupghome(self.policy.read())

    def verify(self, git_dir: StrPath, sha: str) -> Verdict:
        """The verdict on commit ``sha``: cached by commit and policy content. A policy
        file that cannot be read (or imported), or a git that fails, makes the commit
        untrusted, uncached: never an exception that would stop the agent's watch."""
        with self._lock:
            try:
                content = self.policy.read()
                digest = hashlib.sha256(content).hexdigest()
                cached = self._cache.get((sha, digest))
                if cached is not None:
                    self._cache.move_to_end((sha, digest))
                    return cached
                home = self._gnupghome(content)
            except PolicyError as exc:
                log.error("%s", exc.message)
                return Verdict(sha, SignatureState.UNTRUSTED, problem=f"but {exc.message}")
            try:
                verdict = self._check(git_dir, sha, home)
            except GitCommandError as exc:  # fail closed, uncached: the next look retries
                log.error("verify %s: %s", sha[:8], exc.message, extra={"revision": sha})
                return Verdict(sha, SignatureState.UNTRUSTED,
                               problem=f"but git could not check it ({exc.message})")
            self._cache[(sha, digest)] = verdict
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return verdict

    def _check(self, git_dir: StrPath, sha: str, home: Path) -> Verdict:
        self.checks += 1
        ssh = self.policy.scheme is Scheme.SSH
        config = {
            "gpg.ssh.allowedSignersFile": str(self.policy.path) if ssh else os.devnull,
            "gpg.ssh.program": "ssh-keygen",
            "gpg.program": "gpg",
            "gpg.openpgp.program": "gpg",
            "gpg.minTrustLevel": "undefined",
        }
        with short_path(home) as short:
            env = {**ISOLATED_ENV, "GNUPGHOME": str(short)}
            out = run_git("log", "-1", "--no-notes", f"--format={_FORMAT}", sha,
                          git_dir=git_dir, config=config, env=env)
            code, signer, fingerprint, key_id = [*out.split("\0"), "", "", ""][:4]
            if code == "E" and not fingerprint:  # unknown OpenPGP key: gpg names it in ERRSIG
                try:
                    run_git("verify-commit", "--raw", sha, git_dir=git_dir, config=config,
                            env=env)
                except GitCommandError as exc:
                    found = _ERRSIG.search(exc.stderr)
                    if found is not None:
                        fingerprint = found.group(2) or found.group(1)
        return verdict_of(sha, code, signer, fingerprint, key_id, policy=self.policy)

    def _gnupghome(self, keyring: bytes) -> Path:
        """The private GNUPGHOME holding exactly ``keyring`` (for ``ssh``: an empty one,
        so no OpenPGP key of the machine is ever trusted). Built once per content."""
        digest = hashlib.sha256(keyring).hexdigest()
        if self.policy.scheme is Scheme.SSH:
            digest, keyring = "empty", b""
        if self._home is not None and self._home[0] == digest:
            return self._home[1]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        home = self.data_dir / f"gnupg-{digest[:16]}"
        if not (home / "ready").is_file():
            _build_home(home, keyring, self.policy)
        for old in self.data_dir.glob("gnupg-*"):
            if old != home and old.name != "gnupg-empty":
                shutil.rmtree(old, ignore_errors=True)
        self._home = (digest, home)
        return home


def _build_home(home: Path, keyring: bytes, policy: SignaturePolicy) -> None:
    """Import ``keyring`` into a new GNUPGHOME made beside ``home`` and renamed into place
    (another agent sharing the data dir sees a complete home or none)."""
    tmp = Path(tempfile.mkdtemp(prefix=".gnupg-", dir=home.parent))  # mode 0700
    try:
        (tmp / "gpg.conf").write_text(_GPG_CONF)
        if keyring:
            try:
                with short_path(tmp) as short:
                    gpg = ["gpg", "--batch", "--no-tty", "--quiet", "--homedir", str(short)]
                    _run([*gpg, "--import"], keyring)
                    listed = _run([*gpg, "--with-colons", "--list-keys"], b"")
            except OSError as exc:
                raise PolicyError(f"--verify-commits: cannot run gpg: {exc}") from None
            except _ToolError as exc:
                raise PolicyError(f"--verify-commits: cannot import the keyring "
                                  f"{policy.path}: {exc}") from None
            keys = [ln.split(":")[9] for ln in listed.splitlines() if ln.startswith("fpr:")]
            if not keys:
                raise PolicyError(f"--verify-commits: the keyring {policy.path} holds no "
                                  "OpenPGP public key (export one with gpg --armor --export)")
            log.info("verify: imported %d OpenPGP key(s) from %s", len(keys), policy.path)
        (tmp / "ready").write_text("")
        try:
            tmp.rename(home)
        except OSError:  # built meanwhile by someone else: theirs is as good
            if not (home / "ready").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: gpg derives its agent socket's name from the home directory; a unix socket path must fit
#: in 108 bytes (``S.gpg-agent.browser`` included), or gpg fails with "File name too long".
SHORT_HOME = 64


@contextlib.contextmanager
def short_path(home: Path) -> Iterator[Path]:
    """``home``, or while it is too long for gpg's sockets a short symlink to it in the
    temp dir (removed after): an agent with a deep ``--data-dir`` still verifies."""
    if len(str(home)) <= SHORT_HOME:
        yield home
        return
    alias_dir = Path(tempfile.mkdtemp(prefix="vg-", dir="/tmp" if os.path.isdir("/tmp") else None))
    try:
        alias = alias_dir / "h"
        alias.symlink_to(home, target_is_directory=True)
        yield alias
    finally:
        shutil.rmtree(alias_dir, ignore_errors=True)


class _ToolError(Exception):
    pass


def _run(args: list[str], data: bytes) -> str:
    proc = subprocess.run(args, input=data, capture_output=True, timeout=60, check=False,
                          env={**os.environ, "LC_ALL": "C"})
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise _ToolError(err[-1] if err else f"exit status {proc.returncode}")
    return proc.stdout.decode(errors="replace")


def signature_states(git_dir: StrPath, shas: Iterable[str]) -> dict[str, Verdict]:
    """What git says of each commit's signature under the reader's own config (their
    allowed signers, their keyring): for ``latticectl history`` when no note records the
    agent's verdict. One ``git log`` for all of them; {} when git cannot tell."""
    wanted = list(shas)
    if not wanted:
        return {}
    try:  # with no allowed-signers file git calls an SSH signature "N": make it "U"
        run_git("config", "--get", "gpg.ssh.allowedSignersFile", git_dir=git_dir)
        config = {}
    except GitCommandError:
        config = {"gpg.ssh.allowedSignersFile": os.devnull}
    try:
        out = run_git("log", "--no-walk=unsorted", "--no-notes", f"--format=%H%x00{_FORMAT}",
                      *wanted, git_dir=git_dir, config=config)
    except GitCommandError as exc:
        log.debug("signature states: %s", exc)
        return {}
    found: dict[str, Verdict] = {}
    for line in out.splitlines():
        parts = line.split("\0")
        if len(parts) == 5:
            sha, code, signer, fingerprint, key_id = parts
            found[sha] = verdict_of(sha, code, signer, fingerprint, key_id)
    return found
