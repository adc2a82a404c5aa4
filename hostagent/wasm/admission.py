"""Admission of an actor module: fetched from gantry, verified, and trusted; and the
limits an instance runs under (:func:`limits_for`).

Called by :class:`hostagent.wasm.runtime.WasmRuntime` before anything is compiled. A
module is admitted when its claims verify (:func:`lattice.claims.verify_module`: size,
signature, hash, time window), its subject is the requested actor id, and its issuer is
trusted by both lists that may be set: the host's own (``lattice-host
--trusted-issuer``) and the lattice's policy (:mod:`lattice.policy`, read at every start
so that ``latticectl trust`` applies to the next start). Every refusal is a
:class:`~hostagent.workload.RuntimeFailure` saying why in words.

An instance runs under the host's :class:`~hostagent.wasm.engine.Limits` unless its start
carries the ``vinculum.io/limits`` annotation of its deployment (``memory_mib``,
``cpu_ms_per_call``: :class:`lattice.manifests.ActorLimits`); a malformed one refuses the
start, saying what is wrong.

Starts of one actor that overlap (replicas started at once) share one admission, and the
verification (hashing up to 16 MiB, checking a signature) runs in a thread, so the host's
event loop keeps answering while a large module is vetted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping

from nats.aio.client import Client
from pydantic import ValidationError

from hostagent.wasm.engine import Limits
from hostagent.workload import RuntimeFailure
from lattice.claims import Claims, verify_module
from lattice.errors import VinculumError
from lattice.gantry import Gantry
from lattice.manifests import ActorLimits
from lattice.policy import read_trusted
from lattice.protocol import ANN_LIMITS, describe_validation_error

Fetch = Callable[[str], Awaitable[bytes]]
_MIB = 1024 * 1024


def words(exc: BaseException) -> str:
    """An exception as a sentence, without the package prefix."""
    if isinstance(exc, VinculumError):
        return exc.message
    return str(exc) or type(exc).__name__


def limits_for(annotations: Mapping[str, str], defaults: Limits) -> Limits:
    """The limits of an instance started with ``annotations``: ``defaults`` with what its
    ``vinculum.io/limits`` annotation sets; RuntimeFailure when that does not parse. Pure."""
    text = annotations.get(ANN_LIMITS)
    if text is None:
        return defaults
    try:
        wanted = ActorLimits.from_annotation(text)
    except ValidationError as exc:
        raise RuntimeFailure(f"invalid {ANN_LIMITS} annotation {text!r}: "
                             f"{describe_validation_error(exc)}") from None
    except ValueError as exc:
        raise RuntimeFailure(f"invalid {ANN_LIMITS} annotation: {exc}") from None
    limits = defaults
    if wanted.memory_mib is not None:
        limits = dataclasses.replace(limits, memory_bytes=wanted.memory_mib * _MIB)
    if wanted.cpu_ms_per_call is not None:
        limits = dataclasses.replace(limits, call_timeout_s=wanted.cpu_ms_per_call / 1000)
    return limits


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
        self._admitting: dict[str, asyncio.Task[tuple[bytes, Claims]]] = {}

    async def admit(self, actor_id: str) -> tuple[bytes, Claims]:
        """The module of ``actor_id`` and its verified claims, or RuntimeFailure; joins
        an admission of the same actor already under way."""
        task = self._admitting.get(actor_id)
        if task is None:
            task = asyncio.create_task(self._admit(actor_id), name=f"admit-{actor_id[:8]}")
            self._admitting[actor_id] = task
            task.add_done_callback(self._done)
        return await asyncio.shield(task)  # a caller that gives up leaves it to the others

    def _done(self, task: asyncio.Task[tuple[bytes, Claims]]) -> None:
        for actor_id, running in list(self._admitting.items()):
            if running is task:
                del self._admitting[actor_id]
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have given up

    async def _admit(self, actor_id: str) -> tuple[bytes, Claims]:
        try:
            wasm = await self._module_bytes(actor_id)
        except RuntimeFailure:
            raise
        except Exception as exc:
            raise RuntimeFailure(f"cannot fetch the module: {words(exc)}") from exc
        try:
            claims = await asyncio.to_thread(verify_module, wasm)
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
