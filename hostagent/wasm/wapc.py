"""The waPC host side of one actor instance, executed by wasmtime.

:class:`WapcInstance` instantiates a compiled module in its own ``wasmtime.Store`` under
the :class:`Limits` of one instance (linear memory, memories, tables, table elements,
instances) and an epoch deadline, links the ``wapc`` imports (docs/actors.md), runs
``wapc_init``/``_start`` once, and then serves :meth:`WapcInstance.call`: the operation
name and payload go to the guest through ``__guest_request``, the guest answers with
``__guest_response`` or ``__guest_error``. A guest's ``__host_call`` goes to the
``host_call`` callback given at construction (the runtime routes it to a provider).

The guest is not trusted: every pointer and length it hands to an import is read as an
unsigned 32-bit value and checked against its memory, and any failure inside an import
(a bad pointer, an exception) becomes a trap naming the import, which breaks the instance
(:class:`GuestTrap`; the runtime stops it). The imports reach their instance through a
weak reference: wasmtime keeps them alive as long as the store, so a strong one would make
a cycle through native code that Python cannot collect, and a stopped instance (its store,
its memory) would never be freed.

Everything here is synchronous and NOT thread-safe: one instance is used by one thread at
a time (:mod:`hostagent.wasm.runtime` gives every instance its own worker thread). The
CPU bound is epoch interruption: :class:`EpochTicker` increments the engine's epoch every
:data:`TICK_S` seconds while guest code runs, and a call whose guest code runs longer than
its deadline traps; time spent waiting in ``__host_call`` is given back (up to
:attr:`Limits.host_wait_s` per call).
"""

from __future__ import annotations

import logging
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from typing import Any

import wasmtime

from hostagent.errors import HostAgentError
from hostagent.wasm.engine import TICK_S, EpochTicker, Limits
from lattice.errors import PermanentError

log = logging.getLogger(__name__)

#: how much of a console line reaches the host's log
MAX_LOG_LINE = 4096
U32 = 0xFFFF_FFFF

#: host_call(binding, namespace, operation, payload) -> response; raise HostCallError to
#: hand an error to the guest.
HostCall = Callable[[str, str, str, bytes], bytes]
ConsoleLog = Callable[[str], None]


class GuestError(HostAgentError, PermanentError):
    """A guest call failed: the guest reported an error, trapped or ran out of time."""


class GuestTrap(GuestError):
    """The guest trapped or ran past its CPU deadline: the instance is broken, not the
    call (the runtime stops it and the host reports why)."""


class HostCallError(Exception):
    """A host call failed; the message goes to the guest through ``__host_error``."""


class ImportFault(Exception):
    """A host import cannot do what the guest asked (e.g. a pointer outside its memory):
    raised inside wasmtime, it traps the guest."""


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


def _clear_frames(exc: BaseException | None) -> None:
    """Clear the locals of the finished frames that ``exc`` and its causes went through.
    wasmtime-py raises a trap from a generator frame that refers to it: a cycle that only
    Python's cyclic GC collects, late, and the frames refer to the instance (its store,
    its memory)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


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
        self.limits.apply(self.store)
        # per-call exchange state
        self._op = b""
        self._msg = b""
        self._response: bytes | None = None
        self._error: bytes | None = None
        self._host_response = b""
        self._host_error = b""
        self._memory: wasmtime.Memory | None = None
        self._fault: str | None = None  # what an import trapped on, in words
        self._deadline = 0  # the epoch (ticker ticks) at which this call's CPU runs out
        self._forgivable = 0.0  # seconds of host-call waiting still given back in this call
        linker = wasmtime.Linker(engine)
        _link(linker, weakref.ref(self))
        self._begin_call()
        try:
            with self._ticking():  # a start function runs during instantiation
                self.instance = linker.instantiate(self.store, module)
        except Exception as exc:
            _clear_frames(exc)
            raise GuestError(f"cannot instantiate {name}: {self._why(exc)}") from exc
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
        self._begin_call()
        try:
            with self._ticking():
                result = thunk()
        except Exception as exc:  # a trap, or an import's failure: the instance is broken
            _clear_frames(exc)
            raise GuestTrap(f"{self.name} {what}: trapped: {self._why(exc)}") from exc
        return result != 0 if isinstance(result, int) else True

    def _why(self, exc: Exception) -> str:
        """Why guest code stopped: the fault an import recorded (wasmtime-py hands the
        import's exception back through a global, which another thread may take), else
        the trap."""
        if self._fault is None and isinstance(exc, ImportFault):  # another instance's
            return "trapped while another instance's import failed (reason lost)"
        return self._fault or describe_trap(exc)

    def _begin_call(self) -> None:
        """A fresh CPU deadline, and no fault yet."""
        self._fault = None
        ticks = self.limits.deadline_ticks
        self._deadline = (self._ticker.ticks if self._ticker is not None else 0) + ticks
        self._forgivable = self.limits.host_wait_s
        self.store.set_epoch_deadline(ticks)

    def _ticking(self) -> AbstractContextManager[None]:
        """The epoch advances while guest code runs (no ticker: it never advances)."""
        return self._ticker.running() if self._ticker is not None else nullcontext()

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        """Guest code waits for a host call: the epoch ticks that pass meanwhile are added
        to the deadline, so only its own code counts, as long as :attr:`Limits.host_wait_s`
        lasts; waiting past it counts as running."""
        ticker = self._ticker
        if ticker is None:
            yield
            return
        before, started = ticker.ticks, time.monotonic()
        try:
            with ticker.paused():
                yield
        finally:
            waited = time.monotonic() - started
            counted = max(0.0, waited - self._forgivable)
            self._forgivable = max(0.0, self._forgivable - waited)
            self._deadline += ticker.ticks - before - round(counted / TICK_S)
            left = self._deadline - ticker.ticks
            self.store.set_epoch_deadline(max(1, left))
        if left <= 0:
            raise ImportFault(f"ran past its CPU deadline (after {waited:.2f} s in a host "
                              "call, past the time host calls may take)")

    # ------------------------------------------------------------ the guest's memory

    def _mem(self, caller: wasmtime.Caller) -> wasmtime.Memory:
        if self._memory is None:  # during instantiation (a start function)
            memory = caller.get("memory")
            if not isinstance(memory, wasmtime.Memory):
                raise ImportFault("the guest exports no memory")
            self._memory = memory
        return self._memory

    def _span(self, caller: wasmtime.Caller, ptr: int, length: int) -> tuple[int, int]:
        """``ptr`` and ``length`` as the unsigned 32-bit values they are, checked to lie
        inside the guest's memory."""
        ptr &= U32
        length &= U32
        size = self._mem(caller).data_len(caller)
        if ptr + length > size:
            raise ImportFault(f"pointer {ptr} + length {length} is outside the "
                              f"{size}-byte memory")
        return ptr, length

    def _read(self, caller: wasmtime.Caller, ptr: int, length: int, *,
              most: int | None = None) -> bytes:
        ptr, length = self._span(caller, ptr, length)
        if most is not None:
            length = min(length, most)
        if length == 0:
            return b""
        return bytes(self._mem(caller).read(caller, ptr, ptr + length))

    def _write(self, caller: wasmtime.Caller, ptr: int, data: bytes) -> None:
        ptr, _ = self._span(caller, ptr, len(data))
        if data:
            self._mem(caller).write(caller, data, ptr)

    # ------------------------------------------------------------ the imports (see _link)

    def _guest_request(self, caller: wasmtime.Caller, op_ptr: int, msg_ptr: int) -> None:
        self._write(caller, op_ptr, self._op)
        self._write(caller, msg_ptr, self._msg)

    def _guest_response(self, caller: wasmtime.Caller, ptr: int, length: int) -> None:
        self._response = self._read(caller, ptr, length)

    def _guest_error(self, caller: wasmtime.Caller, ptr: int, length: int) -> None:
        self._error = self._read(caller, ptr, length)

    def _host_call_import(self, caller: wasmtime.Caller, bd_ptr: int, bd_len: int,
                          ns_ptr: int, ns_len: int, op_ptr: int, op_len: int, ptr: int,
                          length: int) -> int:
        binding = self._read(caller, bd_ptr, bd_len).decode(errors="replace")
        namespace = self._read(caller, ns_ptr, ns_len).decode(errors="replace")
        operation = self._read(caller, op_ptr, op_len).decode(errors="replace")
        payload = self._read(caller, ptr, length)
        with self._waiting():
            return self._provider_call(binding, namespace, operation, payload)

    def _provider_call(self, binding: str, namespace: str, operation: str,
                       payload: bytes) -> int:
        self._host_response = b""
        self._host_error = b""
        try:
            self._host_response = self._host_call(binding, namespace, operation, payload)
        except HostCallError as exc:
            self._host_error = str(exc).encode()
            return 0
        except Exception as exc:  # a provider's bug is the host call's failure, not the guest's
            log.exception("actor %s: host call %s/%s %s failed", self.name, namespace,
                          binding, operation)
            self._host_error = f"host call failed: {type(exc).__name__}".encode()
            return 0
        return 1

    def _host_response_import(self, caller: wasmtime.Caller, ptr: int) -> None:
        self._write(caller, ptr, self._host_response)

    def _host_response_len(self, caller: wasmtime.Caller) -> int:
        return len(self._host_response)

    def _host_error_import(self, caller: wasmtime.Caller, ptr: int) -> None:
        self._write(caller, ptr, self._host_error)

    def _host_error_len(self, caller: wasmtime.Caller) -> int:
        return len(self._host_error)

    def _console_log(self, caller: wasmtime.Caller, ptr: int, length: int) -> None:
        line = self._read(caller, ptr, length, most=MAX_LOG_LINE)
        self._console(line.decode(errors="replace"))


#: name, parameters (i32), results (i32), the method of WapcInstance that serves it
_IMPORTS: tuple[tuple[str, int, int, Callable[..., Any]], ...] = (
    ("__guest_request", 2, 0, WapcInstance._guest_request),
    ("__guest_response", 2, 0, WapcInstance._guest_response),
    ("__guest_error", 2, 0, WapcInstance._guest_error),
    ("__host_call", 8, 1, WapcInstance._host_call_import),
    ("__host_response", 1, 0, WapcInstance._host_response_import),
    ("__host_response_len", 0, 1, WapcInstance._host_response_len),
    ("__host_error", 1, 0, WapcInstance._host_error_import),
    ("__host_error_len", 0, 1, WapcInstance._host_error_len),
    ("__console_log", 2, 0, WapcInstance._console_log),
)


def _link(linker: wasmtime.Linker, ref: weakref.ref[WapcInstance]) -> None:
    """Define the ``wapc`` imports in ``linker``, each reaching its instance through
    ``ref`` only (see the module doc)."""
    for name, params, results, method in _IMPORTS:
        linker.define_func("wapc", name, wasmtime.FuncType(_i32(params), _i32(results)),
                           _guarded(ref, name, method), access_caller=True)


def _guarded(ref: weakref.ref[WapcInstance], name: str,
             method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` as the import ``name``: any failure in it is recorded on the instance in
    words naming the import and traps the guest."""

    def host_import(*args: Any) -> Any:
        instance = ref()
        if instance is None:
            raise ImportFault(f"{name}: the instance was freed")
        try:
            return method(instance, *args)
        except Exception as exc:
            what = str(exc) if isinstance(exc, ImportFault) else f"{type(exc).__name__}: {exc}"
            instance._fault = f"{name}: {what}"
            raise ImportFault(instance._fault) from exc

    return host_import
