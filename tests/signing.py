"""Real signing keys and signed commits for tests: ``ssh-keygen`` and ``gpg`` in temporary
directories, nothing of the machine's (no ``~/.ssh``, no ``~/.gnupg``, no git config).

:func:`isolate` is what a test module's autouse fixture applies: ``HOME``, ``GNUPGHOME``
and the global/system git config pointed away from the user's, so a developer's
``commit.gpgsign`` or keyring can neither help nor break a test. A :class:`GpgKey` lives in
a short ``/tmp`` home (gpg-agent's socket path must stay under 108 bytes); :meth:`close`
stops the gpg-agent that signing started there, through ``gpgconf`` for that home only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest


def isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Keep the user's HOME, keyring and git config out of this test (and of the
    processes it starts, which inherit the environment)."""
    home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GNUPGHOME", str(home / "no-gnupg"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def _run(args: list[str], *, env: Mapping[str, str] | None = None,
         input: bytes | None = None, cwd: Path | None = None) -> str:
    proc = subprocess.run(args, input=input, capture_output=True, check=False, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout.decode()


@dataclass(frozen=True)
class SshKey:
    private: Path
    principal: str

    @property
    def public(self) -> Path:
        return self.private.with_name(self.private.name + ".pub")

    @property
    def signer_line(self) -> str:
        """Its line in an allowed-signers file."""
        return f"{self.principal} {self.public.read_text().strip()}\n"

    @property
    def fingerprint(self) -> str:
        return _run(["ssh-keygen", "-l", "-f", str(self.public)]).split()[1]

    def git_config(self) -> dict[str, str]:
        return {"gpg.format": "ssh", "user.signingkey": str(self.private)}

    def env(self) -> dict[str, str]:
        return {}


def ssh_key(folder: Path, name: str) -> SshKey:
    """A new ed25519 key without passphrase, ``name@example.com`` as its principal."""
    folder.mkdir(parents=True, exist_ok=True)
    private = folder / f"{name}.key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(private)])
    return SshKey(private, f"{name}@example.com")


def allowed_signers(path: Path, *keys: SshKey) -> Path:
    path.write_text("".join(k.signer_line for k in keys))
    return path


@dataclass(frozen=True)
class GpgKey:
    home: Path
    fingerprint: str
    uid: str

    def armored(self) -> bytes:
        return _run(["gpg", "--homedir", str(self.home), "--armor", "--export",
                     self.fingerprint]).encode()

    def revoke(self) -> None:
        """Import the revocation certificate gpg made with the key."""
        cert = (self.home / "openpgp-revocs.d" / f"{self.fingerprint}.rev").read_text()
        cert = cert.replace(":-----BEGIN PGP PUBLIC KEY BLOCK", "-----BEGIN PGP PUBLIC KEY BLOCK")
        _run(["gpg", "--homedir", str(self.home), "--batch", "--import"], input=cert.encode())

    def git_config(self) -> dict[str, str]:
        return {"gpg.format": "openpgp", "user.signingkey": self.fingerprint}

    def env(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.home)}

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
                       capture_output=True, check=False, timeout=30)
        shutil.rmtree(self.home, ignore_errors=True)


def gpg_key(name: str) -> GpgKey:
    """A new ed25519 signing key without passphrase in its own short-pathed GNUPGHOME."""
    home = Path(tempfile.mkdtemp(prefix="vg-", dir="/tmp"))
    uid = f"{name.title()} <{name}@example.com>"
    _run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "", "--quick-gen-key",
          uid, "ed25519", "sign", "never"])
    listed = _run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys", uid])
    fpr = next(ln.split(":")[9] for ln in listed.splitlines() if ln.startswith("fpr:"))
    return GpgKey(home, fpr, uid)


Key = SshKey | GpgKey


def commit(worktree: Path, files: Mapping[str, str], message: str, *,
           key: Key | None = None) -> str:
    """Write ``files``, commit them with the porcelain (signed with ``key``, if given) and
    return the new sha."""
    for rel, content in files.items():
        f = worktree / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
    _run(["git", "add", "--", *files], cwd=worktree)
    config = [] if key is None else [a for k, v in key.git_config().items()
                                     for a in ("-c", f"{k}={v}")]
    sign = "-S" if key is not None else "--no-gpg-sign"
    _run(["git", *config, "commit", "-q", "--allow-empty", sign, "-m", message],
         cwd=worktree, env=key.env() if key is not None else None)
    return _run(["git", "rev-parse", "HEAD"], cwd=worktree).strip()
