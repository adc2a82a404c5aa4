"""The keys and credentials of a secured local lattice, kept in a state dir.

I/O around :mod:`lattice.auth.keys` and :mod:`lattice.auth.roles`, for ``latticectl up``,
``latticectl host creds|revoke`` and the tests. Layout (every file mode 0600, every folder
0700)::

    <state-dir>/keys/operator.nk          operator seed (signs account JWTs)
    <state-dir>/keys/system.nk            system account seed
    <state-dir>/keys/account-<L>.nk       the lattice's account seed (signs user JWTs)
    <state-dir>/keys/account-<L>.jwt      its current JWT (with revocations)
    <state-dir>/keys/system.creds         a system-account user (pushes account JWTs)
    <state-dir>/keys/hosts-<L>.json       host name -> user public key, for revoke NAME
    <state-dir>/creds/<name>.creds        user credentials: host-<i>, agent, apps, admin,
                                          monitor (a system-account user, see below);
                                          on a leaf site leaf-link and leaf-system-link

Keys are made once and reused by every later ``up`` on the same state dir, so credentials
issued for a host on another machine stay valid and a revocation survives a restart.
Nothing here ever logs or prints a seed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lattice.auth import keys, roles
from lattice.auth.keys import Credentials, NKey, Permissions

#: nats-server's longest protocol line, in bytes (CONNECT carries the user JWT)
MAX_CONTROL_LINE = 32768


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created 0600, atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Issued:
    """Credentials written for one user: where, and the host id they carry (hosts)."""

    name: str
    role: roles.RoleName
    path: Path
    user_public_key: str
    host_id: str = ""


class AuthStore:
    """Operator, system account and one lattice account, on disk under ``state_dir``."""

    def __init__(self, state_dir: Path, lattice_id: str) -> None:
        self.state_dir = Path(state_dir)
        self.lattice_id = lattice_id
        self.keys_dir = self.state_dir / "keys"
        self.creds_dir = self.state_dir / "creds"

    # ------------------------------------------------------------ keys
    def _key(self, file: str, role: keys.Role) -> NKey:
        path = self.keys_dir / file
        if path.is_file():
            return keys.parse_seed(path.read_text(), role)
        key = keys.new_key(role)
        write_secret(path, key.seed + "\n")
        return key

    @property
    def operator(self) -> NKey:
        return self._key("operator.nk", "operator")

    @property
    def system_account(self) -> NKey:
        return self._key("system.nk", "account")

    @property
    def account(self) -> NKey:
        return self._key(f"account-{self.lattice_id}.nk", "account")

    @property
    def exists(self) -> bool:
        return (self.keys_dir / "operator.nk").is_file()

    def initialise(self) -> AuthStore:
        """Make the keys that are missing, the account JWT and the system user (idempotent)."""
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.keys_dir, 0o700)
        if not self._account_jwt_path.is_file():
            self._save_account_jwt({})
        sys_creds = self.keys_dir / "system.creds"
        if not sys_creds.is_file():
            creds = keys.issue_user(self.system_account, name="system",
                                    permissions=Permissions())
            write_secret(sys_creds, creds.text())
        return self

    @property
    def system_creds(self) -> Path:
        return self.keys_dir / "system.creds"

    # ------------------------------------------------------------ account JWT
    @property
    def _account_jwt_path(self) -> Path:
        return self.keys_dir / f"account-{self.lattice_id}.jwt"

    def account_jwt(self) -> str:
        return self._account_jwt_path.read_text().strip()

    def revocations(self) -> dict[str, int]:
        """User public key -> revocation time, from the current account JWT."""
        found = keys.claims_of(self.account_jwt()).get("nats", {}).get("revocations", {})
        return {str(k): int(v) for k, v in found.items()}

    def _save_account_jwt(self, revocations: dict[str, int]) -> str:
        token = keys.account_jwt(self.operator, self.account, name=self.lattice_id,
                                 revocations=revocations)
        write_secret(self._account_jwt_path, token + "\n")
        return token

    def revoke(self, user_public_key: str, *, at: int) -> str:
        """Revoke every JWT of ``user_public_key`` issued at or before ``at``; the new
        account JWT (push it to a running server with :func:`lattice.auth.push`)."""
        revs = self.revocations()
        revs[user_public_key] = at
        return self._save_account_jwt(revs)

    def server_config(self, jwt_dir: Path) -> str:
        """nats-server configuration for operator mode: the operator JWT, the system
        account, and a full (nats-based) resolver preloaded with both accounts, which
        accepts account updates pushed by the system account at run time."""
        op = self.operator
        sys_acc = self.system_account
        op_jwt = keys.operator_jwt(op, name="vinculum", system_account=sys_acc.public_key)
        sys_jwt = keys.account_jwt(op, sys_acc, name="SYS", jetstream=False)
        return "\n".join([
            # a host's JWT lists its allow-lists (several KB, growing with the lattice
            # id): the default 4 KB control line would refuse its CONNECT
            f"max_control_line: {MAX_CONTROL_LINE}",
            f"operator: {op_jwt}",
            f"system_account: {sys_acc.public_key}",
            "resolver: {",
            "  type: full",
            f"  dir: {json.dumps(str(jwt_dir))}",
            "  allow_delete: false",
            "  interval: \"2m\"",
            "  timeout: \"1.9s\"",
            "}",
            "resolver_preload: {",
            f"  {sys_acc.public_key}: {sys_jwt}",
            f"  {self.account.public_key}: {self.account_jwt()}",
            "}",
            "",
        ])

    # ------------------------------------------------------------ users
    def issue(self, role: roles.RoleName, name: str, *, path: Path | None = None) -> Issued:
        """Fresh credentials for ``name`` in ``role``, written to ``path`` (default
        ``creds/<name>.creds``); a host's id is derived from its new user key. The
        :data:`~lattice.auth.roles.SYSTEM_ROLES` (``monitor``: the server's advisories live
        in the system account; ``leaf-system``: a site's link of it) are users of the
        system account, signed by its key; every other role is a user of the lattice's
        account."""
        user = keys.new_key("user")
        host_id = keys.host_id_of(user.public_key) if role == "host" else ""
        account = self.account
        grant = roles.grant(role, self.lattice_id, host_id, account=account.public_key)
        signer = self.system_account if role in roles.SYSTEM_ROLES else account
        creds = keys.issue_user(signer, name=name, permissions=grant.permissions,
                                tags=(f"vinculum-role:{role}",
                                      f"{keys.INBOX_TAG}{grant.inbox}"), user=user)
        target = path or self.creds_dir / f"{name}.creds"
        write_secret(target, creds.text())
        if role == "host":
            self._remember_host(name, user.public_key)
        return Issued(name=name, role=role, path=target, user_public_key=user.public_key,
                      host_id=host_id)

    def issue_monitor(self, path: Path | None = None, *, name: str = "monitor") -> Issued:
        """Credentials of the agent's advisory watcher: a system-account user that may
        only subscribe to the connect/disconnect advisories of this lattice's account
        (:func:`lattice.auth.roles.monitor`), written to ``path`` (default
        ``creds/monitor.creds``)."""
        return self.issue("monitor", name, path=path)

    @property
    def _hosts_path(self) -> Path:
        return self.keys_dir / f"hosts-{self.lattice_id}.json"

    def hosts(self) -> dict[str, str]:
        """Host name -> user public key of every host credential issued here."""
        if not self._hosts_path.is_file():
            return {}
        data = json.loads(self._hosts_path.read_text())
        return {str(k): str(v) for k, v in data.items()}

    def _remember_host(self, name: str, user_public_key: str) -> None:
        hosts = self.hosts()
        hosts[name] = user_public_key
        write_secret(self._hosts_path, json.dumps(hosts, indent=2, sort_keys=True) + "\n")


def read_credentials(path: str | os.PathLike[str]) -> Credentials:
    """The credentials of a ``.creds`` file."""
    return Credentials.parse(Path(path).read_text())
