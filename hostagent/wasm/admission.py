"""Admission of an actor module: fetched from gantry, verified, and trusted.

Called by :class:`hostagent.wasm.runtime.WasmRuntime` before anything is compiled. A
module is admitted when its claims verify (:func:`lattice.claims.verify_module`: size,
signature, hash, time window), its subject is the requested actor id, and its issuer is
trusted by both lists that may be set: the host's own (``lattice-host
--trusted-issuer``) and the lattice's policy (:mod:`lattice.policy`, read at every start
so that ``latticectl trust`` applies to the next start). Every refusal is a
:class:`~hostagent.runtime.RuntimeFailure` saying why in words.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from nats.aio.client import Client

from hostagent.runtime import RuntimeFailure
from lattice.claims import Claims, verify_module
from lattice.errors import VinculumError
from lattice.gantry import Gantry
from lattice.policy import read_trusted

Fetch = Callable[[str], Awaitable[bytes]]


def words(exc: BaseException) -> str:
    """An exception as a sentence, without the package prefix."""
    if isinstance(exc, VinculumError):
        return exc.message
    return str(exc) or type(exc).__name__


class Admission:
    """Fetches and vets modules for one host (see module doc)."""

    def __init__(self, nc: Client | None, lattice_id: str, *, fetch: Fetch | None = None,
                 trusted_issuers: Iterable[str] = ()) -> None:
        self.nc = nc
        self.lattice_id = lattice_id
        self._fetch = fetch
        self._gantry: Gantry | None = None
        #: account keys whose actors may run here; empty: any the lattice allows
        self.trusted_issuers = frozenset(trusted_issuers)

    async def admit(self, actor_id: str) -> tuple[bytes, Claims]:
        """The module of ``actor_id`` and its verified claims, or RuntimeFailure."""
        try:
            wasm = await self._module_bytes(actor_id)
        except RuntimeFailure:
            raise
        except Exception as exc:
            raise RuntimeFailure(f"cannot fetch the module: {words(exc)}") from exc
        try:
            claims = verify_module(wasm)
        except Exception as exc:
            raise RuntimeFailure(f"the module's claims do not verify: {words(exc)}") from exc
        if self.trusted_issuers and claims.issuer not in self.trusted_issuers:
            raise RuntimeFailure(f"the module is signed by account {claims.issuer}, which "
                                 "this host does not trust (--trusted-issuer)")
        await self._check_lattice_policy(claims)
        if claims.subject != actor_id:
            raise RuntimeFailure(f"the module in the registry is signed for {claims.subject}, "
                                 f"not {actor_id}")
        return wasm, claims

    async def _module_bytes(self, actor_id: str) -> bytes:
        if self._fetch is not None:
            return await self._fetch(actor_id)
        if self.nc is None:
            raise RuntimeFailure("no NATS connection to fetch modules from gantry")
        if self._gantry is None:  # one per host: it keeps what it fetched (by digest)
            self._gantry = Gantry(self.nc, self.lattice_id)
        return await self._gantry.fetch(actor_id)

    async def _check_lattice_policy(self, claims: Claims) -> None:
        """A policy that cannot be read refuses the start (the agent retries it)."""
        if self.nc is None:
            return
        try:
            policy, _ = await read_trusted(self.nc, self.lattice_id)
        except VinculumError as exc:
            raise RuntimeFailure(f"cannot check the lattice's trust policy: {words(exc)}"
                                 ) from exc
        if policy is not None and claims.issuer not in policy:
            raise RuntimeFailure(f"the module is signed by account {claims.issuer}, which "
                                 "the lattice does not trust (latticectl trust list)")
