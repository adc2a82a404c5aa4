"""Compiled modules, by content hash: in memory, on disk, and compiled at most once.

:meth:`ModuleCache.get` returns the ``wasmtime.Module`` for some module bytes (sha256):

1. from memory, while it is among the last :data:`MAX_MODULES` (and :data:`MAX_BYTES` of
   compiled code) used;
2. from the cache dir (``<dir>/modules/<wasmtime version>/<sha256>.cwasm``, loaded with
   ``Module.deserialize_file``: ~1 ms), so a restarted host does not compile again; a
   file wasmtime refuses (another version or settings, damaged) is removed and compiled
   afresh. The :data:`MAX_FILES` last used (access time) are kept. Like wasmtime's own
   cache, the files are trusted: the dir must be writable by the host's user only.
   Without a usable dir, nothing is kept across runs;
3. else compiled by :func:`hostagent.wasm.compile.compile_module` in a bounded child
   process. Concurrent requests for the same bytes share one compile (six replicas
   starting at once compile once), and a refused compile is remembered for
   :data:`REFUSAL_TTL_S`, so a hostile module retried by the agent costs nothing more.

Everything runs on the event loop except the loading, which runs in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import logging
import os
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import wasmtime

from hostagent.wasm.compile import CompileBounds, CompileRefused, compile_module
from hostagent.workload import RuntimeFailure

log = logging.getLogger(__name__)

MAX_MODULES = 64
#: compiled code kept in memory (modules in use by instances stay alive regardless)
MAX_BYTES = 256 * 1024 * 1024
#: compiled files kept in the cache dir, newest used first
MAX_FILES = 64
REFUSAL_TTL_S = 600.0
SUFFIX = ".cwasm"


def _version_tag() -> str:
    try:
        return "wasmtime-" + importlib.metadata.version("wasmtime")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "wasmtime"


class ModuleCache:
    """sha256 of the module bytes -> compiled ``wasmtime.Module`` (see module doc)."""

    def __init__(self, engine: wasmtime.Engine, *, cache_dir: Path | None = None,
                 bounds: CompileBounds | None = None) -> None:
        self.engine = engine
        self.bounds = bounds or CompileBounds()
        self.dir = self._usable(cache_dir / "modules" / _version_tag()) if cache_dir else None
        self._modules: OrderedDict[str, tuple[wasmtime.Module, int]] = OrderedDict()
        self._compiling: dict[str, asyncio.Task[wasmtime.Module]] = {}
        self._refused: dict[str, tuple[float, str]] = {}  # digest -> (until, why)
        self.compiled = 0  #: modules compiled by this cache (read by tests)

    @staticmethod
    def _usable(directory: Path) -> Path | None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".probe-"):
                pass
        except OSError as exc:
            log.warning("compiled modules are not cached on disk: cannot use %s: %s",
                        directory, exc)
            return None
        return directory

    async def get(self, wasm: bytes) -> wasmtime.Module:
        """The compiled module for ``wasm``; RuntimeFailure saying why it is not."""
        digest = hashlib.sha256(wasm).hexdigest()
        kept = self._modules.get(digest)
        if kept is not None:
            self._modules.move_to_end(digest)
            return kept[0]
        refused = self._refused.get(digest)
        if refused is not None and refused[0] > time.monotonic():
            raise RuntimeFailure(refused[1])
        task = self._compiling.get(digest)
        if task is None:
            task = asyncio.create_task(self._load_or_compile(digest, wasm),
                                       name=f"compile-{digest[:12]}")
            self._compiling[digest] = task
            task.add_done_callback(self._done)
        # a caller that gives up (its start was cancelled) leaves the compile to the others
        try:
            return await asyncio.shield(task)
        except CompileRefused as exc:
            raise RuntimeFailure(exc.message) from exc
        except Exception as exc:  # e.g. the cache dir filled up: still a refusal, in words
            raise RuntimeFailure(f"the module does not compile: "
                                 f"{str(exc) or type(exc).__name__}") from exc

    def _done(self, task: asyncio.Task[wasmtime.Module]) -> None:
        for digest, running in list(self._compiling.items()):
            if running is task:
                del self._compiling[digest]
        if not task.cancelled():
            task.exception()  # retrieved: every caller may have given up

    async def _load_or_compile(self, digest: str, wasm: bytes) -> wasmtime.Module:
        if self.dir is not None:
            module = await self._load(self.dir / f"{digest}{SUFFIX}")
            if module is not None:
                return self._keep(digest, module, self.dir / f"{digest}{SUFFIX}")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(dir=self.dir, prefix=".compile-") as tmp:
            out = Path(tmp) / f"{digest}{SUFFIX}"
            try:
                await compile_module(wasm, out, self.bounds)
            except CompileRefused as exc:
                now = time.monotonic()
                self._refused = {d: r for d, r in self._refused.items() if r[0] > now}
                self._refused[digest] = (now + REFUSAL_TTL_S, exc.message)
                raise
            module = await self._load(out)
            if module is None:
                raise CompileRefused("the compiled module does not load (see the host's log)")
            self.compiled += 1
            log.info("compiled module %s (%d bytes) in %.0f ms", digest[:12], len(wasm),
                     (time.monotonic() - started) * 1000)
            kept = out
            if self.dir is not None:
                kept = self.dir / out.name
                os.replace(out, kept)
                self._prune()
            return self._keep(digest, module, kept)

    async def _load(self, path: Path) -> wasmtime.Module | None:
        """The module serialized at ``path``; None when there is none or wasmtime refuses
        it (the file is then removed)."""
        if not path.is_file():
            return None
        try:
            return await asyncio.to_thread(wasmtime.Module.deserialize_file, self.engine,
                                           str(path))
        except wasmtime.WasmtimeError as exc:
            log.warning("compiled module %s does not load, compiling again: %s", path.name,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            path.unlink(missing_ok=True)
            return None

    def _keep(self, digest: str, module: wasmtime.Module, path: Path) -> wasmtime.Module:
        size = path.stat().st_size if path.exists() else 0
        self._modules[digest] = (module, size)
        total = sum(s for _, s in self._modules.values())
        while len(self._modules) > 1 and (len(self._modules) > MAX_MODULES or
                                          total > MAX_BYTES):
            _, (_, dropped) = self._modules.popitem(last=False)
            total -= dropped
        if self.dir is not None:  # last used = the access time; the content stays as written
            os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns))
        return module

    def _prune(self) -> None:
        """Keep the :data:`MAX_FILES` most recently used files in the cache dir."""
        assert self.dir is not None
        try:
            files = sorted(self.dir.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_atime)
            for old in files[:-MAX_FILES]:
                old.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("pruning %s: %r", self.dir, exc)

    async def close(self) -> None:
        """Stop the compiles under way (their children are killed)."""
        tasks = list(self._compiling.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
