"""Gantry: the lattice's registry of actor modules, a JetStream object store bucket.

The NATS shell around :mod:`lattice.claims`: :meth:`Gantry.push` verifies a module and
stores it under its actor id (the object name), with the claims in the object's headers;
:meth:`Gantry.fetch` returns the module bytes (hosts verify them again before running);
:meth:`Gantry.list` reads only the metadata. The bucket is ``gantry_<lattice id>`` with
every character outside ``[A-Za-z0-9_-]`` replaced by ``_`` (:func:`bucket_name`), created
on first use. Used by ``latticectl push`` / ``get actors`` and by the hosts. Format and
operations are in docs/registry.md.

An actor id is bound to the account that first pushed it (the ``Lattice-Actor-Issuer``
header of its object): a push of the same id signed by another account is refused
(:class:`IssuerMismatch`) unless forced. The registry is not trusted by its readers: a
fetch refuses an object whose metadata says it is over the size limit before reading a
byte of it (:class:`ModuleTooLarge`), and reads the chunks of exactly that object itself,
stopping at the first byte beyond the size its metadata gave (:class:`BadObject`).

Every network wait of a fetch is bounded (an actor start caught by a NATS restart once
stalled 18 s): each metadata read within :data:`META_TIMEOUT_S`, retried (it changes
nothing) up to :data:`META_ATTEMPTS` times; each chunk within :data:`CHUNK_TIMEOUT_S`, and
the whole download within :func:`download_timeout` of its size. A wait that runs out raises
:class:`~lattice.errors.TransientError`: the caller (a host starting an actor) fails the
start and the agent tries it again later. A download is not retried here: half a module
is worth nothing and a second full bound would double the stall.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import ObjectInfo, ObjectMeta
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, ObjectStore

from lattice import natsutil
from lattice.claims import MAX_MODULE_SIZE, Claims, verify_module
from lattice.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

BUCKET = "gantry"
H_NAME = "Lattice-Actor-Name"
H_CAPS = "Lattice-Actor-Caps"
H_HASH = "Lattice-Module-Hash"
H_ISSUER = "Lattice-Actor-Issuer"
#: how many bytes of fetched modules one Gantry keeps (a module is at most 16 MiB)
CACHE_BYTES = 64 * 1024 * 1024
#: seconds to wait for the next chunk of a module being downloaded
CHUNK_TIMEOUT_S = 5.0
#: seconds one metadata read (the bucket, then the object's info) may take, and how many
#: times it is tried before a fetch gives up; the n-th retry waits n x META_RETRY_DELAY_S
META_TIMEOUT_S = 2.0
META_ATTEMPTS = 3
META_RETRY_DELAY_S = 0.25
#: a whole download may take DOWNLOAD_BASE_S plus its size at DOWNLOAD_MIN_RATE bytes/s
DOWNLOAD_BASE_S = 5.0
DOWNLOAD_MIN_RATE = 1024 * 1024


class ModuleNotFound(PermanentError):
    """No module with this actor id in the lattice's registry."""

    def __init__(self, actor_id: str, bucket: str) -> None:
        super().__init__(f"actor {actor_id} is not in the registry (bucket {bucket}); "
                         "push it with `latticectl push FILE.wasm`")
        self.actor_id = actor_id
        self.bucket = bucket


class ModuleTooLarge(PermanentError):
    """The registry's object is over the size limit: refused without downloading it."""

    def __init__(self, actor_id: str, size: int, max_size: int) -> None:
        super().__init__(f"the module of actor {actor_id} in the registry has {size} "
                         f"bytes, over the limit of {max_size}; it was not downloaded")
        self.actor_id = actor_id
        self.size = size
        self.max_size = max_size


class BadObject(PermanentError):
    """The registry's object is not what its metadata says (written by hand, or broken)."""

    def __init__(self, actor_id: str, why: str) -> None:
        super().__init__(f"the object of actor {actor_id} in the registry is refused: {why}")
        self.actor_id = actor_id


class IssuerMismatch(PermanentError):
    """A push of an actor id that another account's module holds in the registry."""

    def __init__(self, actor_id: str, bound: str, issuer: str) -> None:
        super().__init__(
            f"actor {actor_id} is bound to account {bound}, which pushed it first; this "
            f"module is signed by account {issuer}; refused (an admin may replace it: "
            "`latticectl push --force`)")
        self.actor_id = actor_id
        self.bound = bound
        self.issuer = issuer


@dataclass(frozen=True)
class ActorRecord:
    """What the registry says about one stored module (without its bytes)."""

    id: str
    name: str
    capabilities: tuple[str, ...]
    size: int
    module_hash: str
    issuer: str = ""


def bucket_name(lattice_id: str) -> str:
    """The object store bucket of a lattice's registry. Pure."""
    return natsutil.bucket_name(BUCKET, lattice_id)


def download_timeout(size: int) -> float:
    """Seconds a download of ``size`` bytes may take in all: 5 s for a small module, 21 s
    for one of the 16 MiB limit. Pure; used by :meth:`Gantry.fetch`."""
    return DOWNLOAD_BASE_S + max(size, 0) / DOWNLOAD_MIN_RATE


def fetch_timeout(size: int) -> float:
    """The longest a :meth:`Gantry.fetch` of a ``size``-byte module waits on the network:
    every metadata attempt and its retry delay, then the download. Pure."""
    retries = sum(n * META_RETRY_DELAY_S for n in range(1, META_ATTEMPTS))
    return META_ATTEMPTS * META_TIMEOUT_S + retries + download_timeout(size)


def _header(headers: dict[str, object] | None, key: str) -> str:
    value = (headers or {}).get(key)
    if isinstance(value, list):
        value = value[0] if value else ""
    return value if isinstance(value, str) else ""


def _digest_matches(digest: str, data: bytes) -> bool:
    """Whether ``digest`` (``SHA-256=<base64url>``, as the object store writes it) is the
    digest of ``data``. Pure."""
    kind, _, value = digest.partition("=")
    if kind.upper() != "SHA-256":
        return False
    expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
    return value.rstrip("=") == expected.rstrip("=")


class Gantry:
    """The registry of one lattice on one NATS connection.

    >>> g = Gantry(nc, "default")                    # doctest: +SKIP
    >>> claims = await g.push(signed_wasm)           # doctest: +SKIP
    >>> wasm = await g.fetch(claims.subject)         # doctest: +SKIP
    """

    def __init__(self, nc: Client, lattice_id: str, *,
                 max_size: int = MAX_MODULE_SIZE, replicas: int | None = None) -> None:
        self.nc = nc
        #: replicas of the bucket if this Gantry creates it (``localcluster.replicas_for``;
        #: None: the connection's ``NatsOptions.js_replicas``)
        self.replicas = replicas
        self.lattice_id = lattice_id
        self.bucket = bucket_name(lattice_id)
        self.max_size = max_size
        self._store: ObjectStore | None = None
        #: actor id -> (the object's SHA-256 digest, its bytes), oldest first
        self._cache: dict[str, tuple[str, bytes]] = {}
        self.cache_hits = 0
        #: module bytes this Gantry has read from the bucket (chunks), for the curious
        self.downloaded_bytes = 0

    async def _object_store(self) -> ObjectStore:
        if self._store is None:
            js = natsutil.jetstream(self.nc)
            try:
                try:
                    self._store = await js.object_store(self.bucket)
                except nats.js.errors.BucketNotFoundError:
                    log.info("creating registry bucket %s", self.bucket)
                    self._store = await js.create_object_store(
                        self.bucket, replicas=self.replicas or natsutil.js_replicas(self.nc))
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                raise TransientError(f"gantry: JetStream did not answer for bucket "
                                     f"{self.bucket} ({type(exc).__name__}); is JetStream "
                                     "enabled on the server?", delay=1.0) from exc
        return self._store

    async def bound_issuer(self, actor_id: str) -> str | None:
        """The account the stored module of ``actor_id`` is signed by (its binding), or
        None when there is none (or the object does not say)."""
        store = await self._object_store()
        try:
            info = await store.get_info(actor_id)
        except nats.js.errors.ObjectNotFoundError:
            return None
        except nats.js.errors.BadObjectMetaError:
            return None  # unreadable metadata binds nothing; a push replaces it
        except nats.errors.TimeoutError as exc:
            raise TransientError(f"gantry: reading {actor_id} timed out") from exc
        return _header(info.headers, H_ISSUER) or None

    async def push(self, wasm: bytes, *, force: bool = False) -> Claims:
        """Verify ``wasm`` (ClaimsError when it does not) and store it under its actor id,
        replacing an older module of the same id signed by the same account; a module of
        that id from another account raises IssuerMismatch, unless ``force``."""
        claims = verify_module(wasm, max_size=self.max_size)
        bound = await self.bound_issuer(claims.subject)
        if bound is not None and bound != claims.issuer:
            if not force:
                raise IssuerMismatch(claims.subject, bound, claims.issuer)
            log.info("actor %s: replacing the module of account %s by one of account %s "
                        "(forced)", claims.subject, bound, claims.issuer)
        store = await self._object_store()
        meta = ObjectMeta(
            name=claims.subject,
            description=f"{claims.name} ({', '.join(claims.capabilities) or 'no capabilities'})",
            headers={H_NAME: [claims.name], H_CAPS: [",".join(claims.capabilities)],
                     H_HASH: [claims.module_hash.upper()], H_ISSUER: [claims.issuer]})
        try:
            await store.put(claims.subject, wasm, meta=meta)
        except nats.errors.TimeoutError as exc:
            raise TransientError(f"gantry: storing {claims.subject} timed out") from exc
        log.info("pushed actor %s (%s, %d bytes) to %s", claims.subject, claims.name,
                 len(wasm), self.bucket)
        return claims

    async def fetch(self, actor_id: str) -> bytes:
        """The module stored under ``actor_id``; ModuleNotFound when there is none.

        Fetched bytes are kept by the object's content digest (SHA-256, which the object
        store checks on every download): while the stored object has the digest of a kept
        copy, a fetch costs one metadata request instead of a download. A module pushed
        again under the same id has another digest and is downloaded afresh.
        """
        info = await self._info(actor_id)
        size = info.size or 0
        if size > self.max_size:
            raise ModuleTooLarge(actor_id, size, self.max_size)
        kept = self._cache.get(actor_id)
        if kept is not None and info.digest and kept[0] == info.digest:
            self.cache_hits += 1
            return kept[1]
        data = await self._download(actor_id, info)
        if info.digest:
            self._keep(actor_id, info.digest, data)
        return data

    async def _info(self, actor_id: str) -> ObjectInfo:
        """The object's metadata, each attempt within :data:`META_TIMEOUT_S`, retried on a
        timeout (a read: safe to repeat) up to :data:`META_ATTEMPTS` times."""
        for attempt in range(1, META_ATTEMPTS + 1):
            try:
                async with asyncio.timeout(META_TIMEOUT_S):
                    store = await self._object_store()
                    return await store.get_info(actor_id)
            except nats.js.errors.ObjectNotFoundError:
                raise ModuleNotFound(actor_id, self.bucket) from None
            except nats.js.errors.BadObjectMetaError:
                raise BadObject(actor_id, "its metadata is not an object's") from None
            except (TimeoutError, nats.errors.NoRespondersError, TransientError) as exc:
                if attempt == META_ATTEMPTS:
                    raise TransientError(
                        f"gantry: no answer reading the metadata of {actor_id} "
                        f"({META_ATTEMPTS} attempts of {META_TIMEOUT_S:g}s; is NATS "
                        "reachable?)") from exc
                log.info("gantry: reading the metadata of %s: no answer (attempt %d of "
                         "%d); retrying", actor_id, attempt, META_ATTEMPTS)
            except nats.errors.Error as exc:  # closed connection, buffer full...
                raise TransientError(f"gantry: reading the metadata of {actor_id} failed "
                                     f"({type(exc).__name__}: {exc})") from exc
            await asyncio.sleep(attempt * META_RETRY_DELAY_S)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _download(self, actor_id: str, info: ObjectInfo) -> bytes:
        """The chunks of exactly the object ``info`` describes (its nuid), at most
        ``info.size`` bytes of them, checked against its digest; each chunk within
        :data:`CHUNK_TIMEOUT_S`, all within :func:`download_timeout`."""
        size = info.size or 0
        if info.options is not None and info.options.link is not None:
            raise BadObject(actor_id, "it is a link to another object")
        if not info.nuid:
            raise BadObject(actor_id, "its metadata names no chunks")
        if size == 0:
            return b""
        data = bytearray()
        bound = download_timeout(size)
        try:
            async with asyncio.timeout(bound):
                await self._read_chunks(actor_id, info, data)
        except TimeoutError as exc:
            why = (f"no chunk within {CHUNK_TIMEOUT_S:g}s"
                   if isinstance(exc, nats.errors.TimeoutError)
                   else f"not done within {bound:.1f}s")
            raise TransientError(f"gantry: the download of {actor_id} stalled: {why} "
                                 f"({len(data)} of {size} bytes)") from exc
        except nats.errors.Error as exc:  # closed connection, no responders...
            raise TransientError(f"gantry: the download of {actor_id} failed "
                                 f"({type(exc).__name__}: {exc}; {len(data)} of {size} "
                                 "bytes)") from exc
        if len(data) != size:
            raise BadObject(actor_id, f"it has {len(data)} bytes, its metadata says {size}")
        if not _digest_matches(info.digest or "", bytes(data)):
            raise BadObject(actor_id, "its bytes do not match the digest of its metadata")
        return bytes(data)

    async def _read_chunks(self, actor_id: str, info: ObjectInfo, data: bytearray) -> None:
        """Append the object's chunks to ``data``, each within :data:`CHUNK_TIMEOUT_S`."""
        size = info.size or 0
        subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=self.bucket, obj=info.nuid)
        # what the server may push ahead of this loop is bounded too: a chunk is at most
        # the max payload, so a legitimate object always fits (nats-py's default: 64 MiB)
        sub = await natsutil.jetstream(self.nc).subscribe(
            subject, stream=f"OBJ_{self.bucket}", ordered_consumer=True,
            pending_bytes_limit=size + 2 * (self.nc.max_payload or 1024 * 1024),
            pending_msgs_limit=(info.chunks or 0) + 64)
        try:
            while True:
                msg = await sub.next_msg(timeout=CHUNK_TIMEOUT_S)
                data += msg.data
                self.downloaded_bytes += len(msg.data)
                if len(data) > size:
                    raise BadObject(actor_id, f"it has more bytes than the {size} its "
                                    "metadata says")
                if msg.metadata.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(nats.errors.Error):  # a closed connection has no sub
                await sub.unsubscribe()

    def _keep(self, actor_id: str, digest: str, data: bytes) -> None:
        self._cache.pop(actor_id, None)
        self._cache[actor_id] = (digest, data)
        total = sum(len(d) for _, d in self._cache.values())
        while total > CACHE_BYTES and len(self._cache) > 1:  # drop the oldest
            oldest = next(iter(self._cache))
            total -= len(self._cache.pop(oldest)[1])

    async def list(self) -> list[ActorRecord]:
        """Every stored module's record, sorted by name then id."""
        store = await self._object_store()
        try:
            infos = await store.list(ignore_deletes=True)
        except nats.js.errors.NotFoundError:
            return []
        records = []
        for info in infos:
            if info.deleted:
                continue
            caps = _header(info.headers, H_CAPS)
            records.append(ActorRecord(
                id=info.name, name=_header(info.headers, H_NAME),
                capabilities=tuple(c for c in caps.split(",") if c),
                size=info.size or 0, module_hash=_header(info.headers, H_HASH),
                issuer=_header(info.headers, H_ISSUER)))
        return sorted(records, key=lambda r: (r.name, r.id))

    async def delete(self, actor_id: str) -> None:
        """Remove a module; ModuleNotFound when there is none."""
        store = await self._object_store()
        try:
            await store.delete(actor_id)
        except nats.js.errors.ObjectNotFoundError:
            raise ModuleNotFound(actor_id, self.bucket) from None
