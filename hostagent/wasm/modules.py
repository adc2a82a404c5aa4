"""Compiled modules, cached by content hash.

Compiling a module with Cranelift takes milliseconds to seconds; the same bytes (sha256)
are compiled once per engine and kept for the life of the host (a few modules per host:
the cache is not bounded beyond :data:`MAX_MODULES`, oldest dropped first).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict

import wasmtime

log = logging.getLogger(__name__)

MAX_MODULES = 64


class ModuleCache:
    """sha256 of the module bytes -> compiled ``wasmtime.Module`` (thread-safe)."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.engine = engine
        self._modules: OrderedDict[str, wasmtime.Module] = OrderedDict()
        self._lock = threading.Lock()
        self.compiled = 0

    def get(self, wasm: bytes) -> wasmtime.Module:
        """The compiled module for ``wasm``; compiles on a miss (raises WasmtimeError)."""
        digest = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            module = self._modules.get(digest)
            if module is not None:
                self._modules.move_to_end(digest)
                return module
        module = wasmtime.Module(self.engine, wasm)
        with self._lock:
            self._modules[digest] = module
            self.compiled += 1
            while len(self._modules) > MAX_MODULES:
                self._modules.popitem(last=False)
        log.debug("compiled module %s (%d bytes)", digest[:12], len(wasm))
        return module
