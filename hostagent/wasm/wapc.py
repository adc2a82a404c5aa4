"""The waPC host side of one actor instance, executed by wasmtime.

:class:`WapcInstance` instantiates a compiled module in its own ``wasmtime.Store`` with a
memory limit and an epoch deadline, links the ``wapc`` imports (docs/actors.md), runs
``wapc_init``/``_start`` once, and then serves :meth:`WapcInstance.call`: the operation
name and payload go to the guest through ``__guest_request``, the guest answers with
``__guest_response`` or ``__guest_error``. A guest's ``__host_call`` goes to the
``host_call`` callback given at construction (the runtime routes it to a provider).

Everything here is synchronous and NOT thread-safe: one instance is used by one thread at
a time (:mod:`hostagent.wasm.runtime` gives every instance its own worker thread). The
CPU bound is epoch interruption: :class:`EpochTicker` increments the engine's epoch every
:data:`TICK_S` seconds while guest code runs, and a call that runs longer than its
deadline traps.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import wasmtime

from lattice.errors import PermanentError

log = logging.getLogger(__name__)

TICK_S = 0.01
DEFAULT_CALL_TIMEOUT_S = 2.0
DEFAULT_MEMORY_LIMIT = 64 * 1024 * 1024

#: host_call(binding, namespace, operation, payload) -> response; raise HostCallError to
#: hand an error to the guest.
HostCall = Callable[[str, str, str, bytes], bytes]
ConsoleLog = Callable[[str], None]


class GuestError(PermanentError):
    """A guest call failed: the guest reported an error, trapped or ran out of time."""


class GuestTrap(GuestError):
    """The guest trapped or ran past its CPU deadline: the instance is broken, not the
    call (the runtime stops it and the host reports why)."""


class HostCallError(Exception):
    """A host call failed; the message goes to the guest through ``__host_error``."""


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one instance may use."""

    memory_bytes: int = DEFAULT_MEMORY_LIMIT
    call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S

    @property
    def deadline_ticks(self) -> int:
        return max(1, round(self.call_timeout_s / TICK_S))


def new_engine(cache_dir: Path | None = None) -> wasmtime.Engine:
    """An engine with epoch interruption on (every store of it needs a deadline). With
    ``cache_dir``, compiled code is kept there by wasmtime's own cache, so a restarted
    host does not compile the same module again; a cache that cannot be set up is
    logged and skipped (it never stops a host)."""
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.cranelift_opt_level = "speed"
    if cache_dir is not None:
        _enable_cache(config, cache_dir)
    return wasmtime.Engine(config)


def _enable_cache(config: wasmtime.Config, cache_dir: Path) -> None:
    """Point wasmtime's compilation cache at ``cache_dir`` (a TOML file says where)."""
    directory = json.dumps(str(cache_dir.resolve()))  # a TOML basic string
    # wasmtime >= 33 has no `enabled` key; older releases require it
    bodies = (f"[cache]\ndirectory = {directory}\n",
              f"[cache]\nenabled = true\ndirectory = {directory}\n")
    last: Exception | None = None
    for body in bodies:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            toml = cache_dir / "wasmtime-cache.toml"
            toml.write_text(body)
            config.cache = str(toml)
            return
        except (OSError, wasmtime.WasmtimeError) as exc:
            last = exc
    log.warning("compiled modules are not cached on disk: cannot use %s: %s", cache_dir, last)


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

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=1.0)


def _i32(n: int) -> list[wasmtime.ValType]:
    return [wasmtime.ValType.i32()] * n


def describe_trap(exc: Exception) -> str:
    """A one-line description of a wasmtime failure."""
    text = str(exc).strip()
    if "interrupt" in text:
        return "ran past its CPU deadline (interrupted)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("wasm trap:"):
            return line
    return lines[0] if lines else type(exc).__name__


class WapcInstance:
    """One instantiated waPC guest. Construct in the thread that will use it."""

    def __init__(self, engine: wasmtime.Engine, module: wasmtime.Module, *, name: str,
                 host_call: HostCall, limits: Limits | None = None,
                 console: ConsoleLog | None = None, ticker: EpochTicker | None = None) -> None:
        self.name = name
        self._ticker = ticker
        self.limits = limits or Limits()
        self._host_call = host_call
        self._console = console or (lambda text: log.info("actor %s: %s", name, text))
        self.store = wasmtime.Store(engine)
        self.store.set_limits(memory_size=self.limits.memory_bytes)
        self.store.set_epoch_deadline(self.limits.deadline_ticks)
        # per-call exchange state
        self._op = b""
        self._msg = b""
        self._response: bytes | None = None
        self._error: bytes | None = None
        self._host_response = b""
        self._host_error = b""
        self._memory: wasmtime.Memory | None = None
        linker = wasmtime.Linker(engine)
        self._define(linker)
        try:
            with self._ticking():  # a start function runs during instantiation
                self.instance = linker.instantiate(self.store, module)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise GuestError(f"cannot instantiate {name}: {describe_trap(exc)}") from exc
        exports = self.instance.exports(self.store)
        memory = exports.get("memory")
        guest_call = exports.get("__guest_call")
        if not isinstance(memory, wasmtime.Memory):
            raise GuestError(f"{name} does not export its memory as 'memory'")
        if not isinstance(guest_call, wasmtime.Func):
            raise GuestError(f"{name} does not export __guest_call")
        self._memory = memory
        self._guest_call = guest_call
        for init in ("wapc_init", "_start"):
            func = exports.get(init)
            if isinstance(func, wasmtime.Func):
                self._run(partial(func, self.store), init)

    # ------------------------------------------------------------ calls

    def call(self, operation: str, payload: bytes) -> bytes:
        """Call the guest's ``operation`` with ``payload``; its response, or GuestError."""
        self._op = operation.encode()
        self._msg = payload
        self._response = None
        self._error = None
        ok = self._run(
            lambda: self._guest_call(self.store, len(self._op), len(self._msg)), operation
        )
        if self._error is not None:
            raise GuestError(f"{self.name} {operation}: guest error: "
                             f"{self._error.decode(errors='replace')}")
        if not ok:
            raise GuestError(f"{self.name} {operation}: the guest returned failure "
                             "without an error message")
        return self._response if self._response is not None else b""

    def _run(self, thunk: Callable[[], object], what: str) -> bool:
        self.store.set_epoch_deadline(self.limits.deadline_ticks)
        try:
            with self._ticking():
                result = thunk()
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise GuestTrap(f"{self.name} {what}: trapped: {describe_trap(exc)}") from exc
        return result != 0 if isinstance(result, int) else True

    def _ticking(self) -> AbstractContextManager[None]:
        """The epoch advances while guest code runs (no ticker: it never advances)."""
        return self._ticker.running() if self._ticker is not None else nullcontext()

    # ------------------------------------------------------------ imports

    def _mem(self, caller: wasmtime.Caller) -> wasmtime.Memory:
        if self._memory is None:
            memory = caller.get("memory")
            if not isinstance(memory, wasmtime.Memory):
                raise HostCallError("guest has no memory export")
            self._memory = memory
        return self._memory

    def _read(self, caller: wasmtime.Caller, ptr: int, length: int) -> bytes:
        if length < 0 or ptr < 0:
            raise IndexError("negative pointer or length")
        memory = self._mem(caller)
        if ptr + length > memory.data_len(caller):
            raise IndexError("read outside the guest memory")
        return bytes(memory.read(caller, ptr, ptr + length))

    def _write(self, caller: wasmtime.Caller, ptr: int, data: bytes) -> None:
        if data:
            self._mem(caller).write(caller, data, ptr)

    def _define(self, linker: wasmtime.Linker) -> None:
        def ft(params: int, results: int) -> wasmtime.FuncType:
            return wasmtime.FuncType(_i32(params), _i32(results))

        def guest_request(caller: wasmtime.Caller, op_ptr: int, msg_ptr: int) -> None:
            self._write(caller, op_ptr, self._op)
            self._write(caller, msg_ptr, self._msg)

        def guest_response(caller: wasmtime.Caller, ptr: int, length: int) -> None:
            self._response = self._read(caller, ptr, length)

        def guest_error(caller: wasmtime.Caller, ptr: int, length: int) -> None:
            self._error = self._read(caller, ptr, length)

        def host_call(caller: wasmtime.Caller, bd_ptr: int, bd_len: int, ns_ptr: int,
                      ns_len: int, op_ptr: int, op_len: int, ptr: int, length: int) -> int:
            binding = self._read(caller, bd_ptr, bd_len).decode(errors="replace")
            namespace = self._read(caller, ns_ptr, ns_len).decode(errors="replace")
            operation = self._read(caller, op_ptr, op_len).decode(errors="replace")
            payload = self._read(caller, ptr, length)
            self._host_response = b""
            self._host_error = b""
            try:
                self._host_response = self._host_call(binding, namespace, operation, payload)
            except HostCallError as exc:
                self._host_error = str(exc).encode()
                return 0
            except Exception as exc:  # a provider bug must not kill the guest call
                log.exception("actor %s: host call %s/%s %s failed", self.name, namespace,
                              binding, operation)
                self._host_error = f"host call failed: {type(exc).__name__}".encode()
                return 0
            return 1

        def host_response(caller: wasmtime.Caller, ptr: int) -> None:
            self._write(caller, ptr, self._host_response)

        def host_response_len() -> int:
            return len(self._host_response)

        def host_error(caller: wasmtime.Caller, ptr: int) -> None:
            self._write(caller, ptr, self._host_error)

        def host_error_len() -> int:
            return len(self._host_error)

        def console_log(caller: wasmtime.Caller, ptr: int, length: int) -> None:
            self._console(self._read(caller, ptr, length).decode(errors="replace"))

        define = linker.define_func
        define("wapc", "__guest_request", ft(2, 0), guest_request, access_caller=True)
        define("wapc", "__guest_response", ft(2, 0), guest_response, access_caller=True)
        define("wapc", "__guest_error", ft(2, 0), guest_error, access_caller=True)
        define("wapc", "__host_call", ft(8, 1), host_call, access_caller=True)
        define("wapc", "__host_response", ft(1, 0), host_response, access_caller=True)
        define("wapc", "__host_response_len", ft(0, 1), host_response_len)
        define("wapc", "__host_error", ft(1, 0), host_error, access_caller=True)
        define("wapc", "__host_error_len", ft(0, 1), host_error_len)
        define("wapc", "__console_log", ft(2, 0), console_log, access_caller=True)
