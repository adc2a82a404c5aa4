"""``latticectl actor sign|inspect``: sign a WebAssembly module with claims, and read them.

Signing wraps :func:`lattice.claims.sign_module`; the keys it needs come from
``--account-seed``/``--module-seed`` files, or else from the key store in the config
directory (``keys/`` next to the config file of :func:`cli.settings.config_path`): one
account seed ``account.nk`` and one module seed per actor name ``<name>.nk``, created with
mode 0600 on first use, so signing the same name again gives the same actor id.
``latticectl push`` (cli/gantry_cmd.py) uploads a signed module. ``inspect`` reads any
module wascap (waSCC's signing tool) signed too, and shows its tags, revision and version.
docs/registry.md describes the format and the key store.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.output import emit, output_option, table
from cli.settings import CliError, config_path
from lattice.claims import (
    Claims,
    ClaimsError,
    encode_seed,
    read_claims,
    sign_module,
    verify_module,
)
from lattice.durations import parse_duration

_LONG = re.compile(r"^(\d+)([wy])$")
_LONG_UNITS = {"w": 7 * 86400, "y": 365 * 86400}
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


if TYPE_CHECKING:
    _IntParam = click.ParamType[int]
else:  # click < 8.2 has no generic ParamType
    _IntParam = click.ParamType


class Duration(_IntParam):
    """A duration as :func:`lattice.durations.parse_duration` reads it (``90s``, ``30m``,
    ``1h30m``, ``7d``), or weeks and years (``2w``, ``1y``): whole seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        m = _LONG.match(str(value).strip().lower())
        if m:
            return int(m.group(1)) * _LONG_UNITS[m.group(2)]
        try:
            return int(parse_duration(str(value)))
        except ValueError as exc:
            self.fail(f"{exc}; or weeks and years, e.g. 2w, 1y", param, ctx)


def keys_dir() -> Path:
    """Where created seeds are kept: ``keys/`` in latticectl's config directory."""
    return config_path().parent / "keys"


def load_or_create_seed(path: Path, role: str) -> tuple[bytes, bool]:
    """The seed in ``path``, created (mode 0600, directory 0700) when missing; and whether
    it was created."""
    if path.is_file():
        return path.read_bytes().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    seed = encode_seed(os.urandom(32), role)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another latticectl created it meanwhile
        return path.read_bytes().strip(), False
    with os.fdopen(fd, "wb") as f:
        f.write(seed + b"\n")
    return seed, True


def read_seed_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes().strip()
    except OSError as exc:
        raise CliError(f"cannot read the {what} seed {path}: {exc.strerror}") from None


def read_module(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None


def _time(t: int | None, default: str) -> str:
    if t is None:
        return default
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def claims_document(claims: Claims, *, size: int, problem: str | None) -> dict[str, Any]:
    """The ``-o yaml|json`` form of a module's claims (docs/cli.md)."""
    return {"id": claims.subject, "name": claims.name, "issuer": claims.issuer,
            "capabilities": list(claims.capabilities), "module_hash": claims.module_hash,
            "tags": list(claims.tags), "revision": claims.revision,
            "version": claims.version, "issued_at": _time(claims.issued_at, ""),
            "not_before": _time(claims.not_before, "") or None,
            "expires": _time(claims.expires, "") or None, "size": size,
            "verified": problem is None, "problem": problem}


@click.group("actor")
def actor_group() -> None:
    """Sign WebAssembly actor modules and inspect their claims.

    \b
    Examples:
      latticectl actor sign echo.wasm --name echo --cap wascc:messaging -o echo.signed.wasm
      latticectl actor inspect echo.signed.wasm
      latticectl push echo.signed.wasm
    """


@actor_group.command("sign")
@click.argument("module", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The actor's name (also names its module key).")
@click.option("--cap", "caps", multiple=True,
              help="A capability the actor may use, e.g. wascc:messaging (repeatable).")
@click.option("--account-seed", type=click.Path(dir_okay=False),
              help="Account seed file (SA...); default: keys/account.nk in the config dir, "
                   "created when missing.")
@click.option("--module-seed", type=click.Path(dir_okay=False),
              help="Module seed file (SM...); default: keys/<name>.nk in the config dir, "
                   "created when missing.")
@click.option("--expires-in", type=Duration(), help="Validity from now: 90s, 30m, 12h, 7d, 1y.")
@click.option("--ver", "version", help="A version string recorded in the claims.")
@click.option("--rev", "revision", type=click.IntRange(-(2**31), 2**31 - 1),
              help="A revision number recorded in the claims (wascap's rev).")
@click.option("--tag", "tags", multiple=True, help="A free tag recorded in the claims "
              "(repeatable).")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="Where to write the signed module.")
def sign_cmd(module: str, name: str, caps: tuple[str, ...], account_seed: str | None,
             module_seed: str | None, expires_in: int | None, version: str | None,
             revision: int | None, tags: tuple[str, ...], out: str) -> None:
    """Sign MODULE with claims (name, capabilities, hash) and print the actor id.

    The signature is an Ed25519 JWT in a custom section named `jwt`; an older one is
    replaced. Seeds not given are taken from (or created in) the key store.

    \b
    Examples:
      latticectl actor sign echo.wasm --name echo --cap wascc:messaging -o echo_s.wasm
      latticectl actor sign counter.wasm --name counter --cap wascc:messaging \\
          --cap wascc:keyvalue --expires-in 30d -o counter_s.wasm
      latticectl actor sign echo.wasm --name echo --ver 1.2.0 --rev 3 --tag demo \\
          -o echo_s.wasm
    """
    wasm = read_module(module)
    created: list[Path] = []
    if account_seed:
        a_seed = read_seed_file(account_seed, "account")
    else:
        path = keys_dir() / "account.nk"
        a_seed, new = load_or_create_seed(path, "A")
        created += [path] if new else []
    if module_seed:
        m_seed = read_seed_file(module_seed, "module")
    else:
        path = keys_dir() / f"{_SAFE.sub('_', name)}.nk"
        m_seed, new = load_or_create_seed(path, "M")
        created += [path] if new else []
    expires = int(time.time()) + expires_in if expires_in is not None else None
    try:
        signed, claims = sign_module(wasm, account_seed=a_seed, module_seed=m_seed, name=name,
                                     capabilities=caps, expires=expires, version=version,
                                     revision=revision, tags=tags)
    except ClaimsError as exc:
        raise CliError(f"{module}: {exc.message}") from None
    Path(out).write_bytes(signed)
    for path in created:
        click.echo(f"created seed {path} (mode 0600; keep it to sign this actor again)",
                   err=True)
    click.echo(claims.subject)


@actor_group.command("inspect")
@click.argument("module", type=click.Path(dir_okay=False))
@output_option(formats=("yaml", "json"))
def inspect_cmd(module: str, output: str | None) -> None:
    """Print the claims of a signed MODULE and whether they verify (signature, hash, time
    window, size). Exit status 0 either way; 2 when the module has no claims at all.

    \b
    Examples:
      latticectl actor inspect echo.signed.wasm
      latticectl actor inspect echo.signed.wasm -o json | jq -r .id
    """
    wasm = read_module(module)
    try:
        claims = read_claims(wasm)
    except ClaimsError as exc:
        raise CliError(f"{module}: {exc.message}") from None
    problem: str | None = None
    try:
        verify_module(wasm)
    except ClaimsError as exc:
        problem = exc.message
    if output in ("yaml", "json"):
        emit(claims_document(claims, size=len(wasm), problem=problem), output)
        return
    rows = [
        ("ID", claims.subject), ("NAME", claims.name), ("ISSUER", claims.issuer),
        ("CAPABILITIES", ", ".join(claims.capabilities) or "<none>"),
        ("MODULE HASH", claims.module_hash), ("TAGS", ", ".join(claims.tags) or "-"),
        ("VERSION", claims.version or "-"),
        ("REVISION", "-" if claims.revision is None else str(claims.revision)),
        ("ISSUED", _time(claims.issued_at, "-")), ("NOT BEFORE", _time(claims.not_before, "-")),
        ("EXPIRES", _time(claims.expires, "never")), ("SIZE", str(len(wasm))),
        ("VERIFIED", "yes" if problem is None else f"NO: {problem}"),
    ]
    for line in table(("FIELD", "VALUE"), rows)[1:]:
        click.echo(line)


COMMANDS: list[click.Command] = [actor_group]
