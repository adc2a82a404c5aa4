"""The wasmtime engine of a host, the CPU clock of its guests, and an instance's limits.

:func:`new_engine` makes the one engine a host compiles and runs with (epoch interruption
on; no proposal that allocates outside the linear memory). :class:`EpochTicker` advances
its epoch every :data:`TICK_S` seconds while some guest runs, so a call's deadline counts
the guest's own instructions. :class:`Limits` are what one instance may use, applied to
its store by :mod:`hostagent.wasm.wapc`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import wasmtime

TICK_S = 0.01
DEFAULT_CALL_TIMEOUT_S = 2.0
DEFAULT_MEMORY_LIMIT = 64 * 1024 * 1024
#: the waSCC modules built with Rust declare one table of ~200 functions
DEFAULT_TABLE_ELEMENTS = 10_000


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one instance may use. wasmtime bounds ``memory_bytes`` and ``table_elements``
    per memory and per table, so the counts of memories and tables are what make them
    bounds of the instance: a waPC guest has exactly one memory, and the modules Rust and
    TinyGo build have at most one table."""

    memory_bytes: int = DEFAULT_MEMORY_LIMIT
    call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    #: wall time per call spent waiting in host calls that does not count as CPU
    host_wait_s: float = 30.0
    memories: int = 1
    tables: int = 1
    table_elements: int = DEFAULT_TABLE_ELEMENTS
    instances: int = 1

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0 or self.call_timeout_s <= 0 or self.host_wait_s < 0:
            raise ValueError(f"invalid limits: {self}")
        if min(self.memories, self.tables, self.table_elements, self.instances) < 0:
            raise ValueError(f"invalid limits: {self}")

    @property
    def deadline_ticks(self) -> int:
        return max(1, round(self.call_timeout_s / TICK_S))

    def apply(self, store: wasmtime.Store) -> None:
        """Set every limit wasmtime has on ``store``."""
        store.set_limits(memory_size=self.memory_bytes, table_elements=self.table_elements,
                         instances=self.instances, tables=self.tables,
                         memories=self.memories)


def new_engine() -> wasmtime.Engine:
    """An engine with epoch interruption on (every store of it needs a deadline) and
    without the proposals that allocate outside the linear memory (GC, exceptions).
    Compiled code is kept by :class:`hostagent.wasm.modules.ModuleCache`, not by
    wasmtime's own cache; the compiler child (:mod:`hostagent.wasm.compile`) makes its
    engine here too, so what it serialises loads into the host's."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.cranelift_opt_level = "speed"
    config.wasm_gc = False
    config.wasm_exceptions = False
    return wasmtime.Engine(config)


class EpochTicker:
    """A daemon thread that advances an engine's epoch every :data:`TICK_S` seconds while
    a guest runs (:meth:`running`), and sleeps while none does: an idle host costs no CPU.
    A store's deadline is set when its call starts, so ticks skipped while idle shorten
    nobody's budget."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._busy = 0
        self._closed = False
        self.ticks = 0  #: epochs advanced so far (read by tests)
        self._thread = threading.Thread(target=self._run, name="wasm-epoch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._cond:
            next_tick = time.monotonic() + TICK_S
            while not self._closed:
                if self._busy == 0:
                    self._cond.wait()  # woken by running() or close()
                    next_tick = time.monotonic() + TICK_S
                    continue
                left = next_tick - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self.engine.increment_epoch()
                self.ticks += 1
                next_tick += TICK_S

    @contextmanager
    def running(self) -> Iterator[None]:
        """Tick while the body runs guest code (nested and concurrent uses add up)."""
        with self._cond:
            self._busy += 1
            if self._busy == 1:
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No ticks on behalf of the body (a guest waiting in a host call)."""
        with self._cond:
            self._busy -= 1
        try:
            yield
        finally:
            with self._cond:
                self._busy += 1
                if self._busy == 1:
                    self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=1.0)
