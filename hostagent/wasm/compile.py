"""Compiling a module: checked first, then compiled in a child process under bounds.

Compiling is the step of an actor's start whose cost the module's author chooses:
wasmtime took ~20 s of both cores and grew the host by 2.6 GB for a module of 600,000
empty functions, and a compile running in a thread of the host cannot be stopped. So a
host never compiles in its own process:

* :func:`precheck` reads the module's section headers (pure, no compiling) and refuses a
  module that defines more functions or more code than :class:`CompileBounds` allow: the
  cheap first line, in microseconds;
* :func:`compile_module` then runs ``python -m hostagent.wasm.compile`` with the module on
  its stdin. The child lowers its priority (nice 10, so the host's own threads and guests
  come first), compiles on two threads at most, caps its address space (``RLIMIT_AS``)
  and CPU time (``RLIMIT_CPU``), dies with its parent, compiles with the host's engine settings
  (:func:`hostagent.wasm.engine.new_engine`) and writes ``Module.serialize()`` to the file it
  is given; the host kills it when the deadline passes. The caller loads the file with
  ``Module.deserialize_file`` (wasmtime refuses an artifact of another version or of other
  settings).

A refusal is a :class:`CompileRefused` saying why in words; it is permanent (the same bytes
under the same bounds fail the same way). :mod:`hostagent.wasm.modules` calls this and
caches the results.
"""

from __future__ import annotations

# The child imports this module first: only the standard library's cheap modules at the
# top (asyncio and lattice.claims, which pulls in pydantic, cost the child ~100 ms, so the
# parent's functions import them where they run).
import contextlib
import ctypes
import math
import os
import resource
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from hostagent.errors import HostAgentError
from lattice.errors import PermanentError

_MIB = 1024 * 1024
_FUNCTION_SECTION = 3
_CODE_SECTION = 10
_PR_SET_PDEATHSIG = 1
#: how much of the child's stderr a refusal quotes
_MAX_ERROR = 300


class CompileRefused(HostAgentError, PermanentError):
    """A module that is not compiled: over a bound, or not valid WebAssembly."""


@dataclass(frozen=True, kw_only=True)
class CompileBounds:
    """What compiling one module may cost. The defaults admit the modules Rust and TinyGo
    build for actors (a 20,000-function, 880 KB module compiles in ~0.8 s and 145 MB on a
    2-core VM) with room to spare, and refuse the ones that would take a host over."""

    #: functions the module may define (a 100,000-function module compiles in ~3 s, 580 MB)
    max_functions: int = 100_000
    #: bytes of its code section
    max_code_bytes: int = 8 * _MIB
    #: wall-clock seconds the child may take before it is killed
    timeout_s: float = 10.0
    #: the child's address space (``RLIMIT_AS``), its Python and wasmtime included
    memory_bytes: int = 1024 * _MIB

    @property
    def cpu_s(self) -> int:
        """The child's CPU seconds (``RLIMIT_CPU``): twice the deadline, as it compiles on
        two threads; the deadline usually comes first."""
        return max(1, math.ceil(2 * self.timeout_s))


def _section_count(wasm: bytes, start: int) -> tuple[int, int]:
    """The item count at the head of the section that starts at ``start``, and the size of
    its body. Pure."""
    from lattice.claims import leb128_decode

    size, body = leb128_decode(wasm, start + 1)
    count, _ = leb128_decode(wasm, body)
    return count, size


def precheck(wasm: bytes, bounds: CompileBounds) -> None:
    """Refuse ``wasm`` (CompileRefused) when its headers say it defines more functions or
    code than ``bounds`` allow, or its sections do not parse. Pure; reads only headers."""
    from lattice.claims import ClaimsError, sections

    try:
        for section in sections(wasm):
            if section.id == _FUNCTION_SECTION:
                count, _ = _section_count(wasm, section.start)
                if count > bounds.max_functions:
                    raise CompileRefused(
                        f"the module defines {count} functions, over the limit of "
                        f"{bounds.max_functions}; it is not compiled")
            elif section.id == _CODE_SECTION:
                _, size = _section_count(wasm, section.start)
                if size > bounds.max_code_bytes:
                    raise CompileRefused(
                        f"the module has {size} bytes of code, over the limit of "
                        f"{bounds.max_code_bytes}; it is not compiled")
    except ClaimsError as exc:
        raise CompileRefused(f"the module does not parse: {exc.message}") from exc


def _why(returncode: int, stderr: bytes, bounds: CompileBounds) -> str:
    """What a child's exit status and last words mean, as a sentence."""
    text = stderr.decode(errors="replace").strip()
    last = text.splitlines()[-1].strip() if text else ""
    if returncode == -signal.SIGABRT or "memory allocation of" in text or "MemoryError" in text:
        return (f"compiling it needed more than {bounds.memory_bytes // _MIB} MiB of memory "
                "(the limit)")
    if returncode == -signal.SIGXCPU:
        return f"compiling it used more than {bounds.cpu_s} s of CPU (the limit)"
    if returncode == -signal.SIGKILL:
        return (f"the compiler was killed (at its limit of {bounds.cpu_s} s of CPU, or by "
                "the system for memory)")
    if returncode < 0:
        return f"the compiler was killed by signal {-returncode}"
    return (last or f"the compiler exited with status {returncode}")[:_MAX_ERROR]


async def compile_module(wasm: bytes, out: Path, bounds: CompileBounds) -> None:
    """Compile ``wasm`` in a bounded child that writes the serialized module to ``out``;
    CompileRefused saying why when it does not. Cancelling kills the child."""
    import asyncio

    precheck(wasm, bounds)
    # two compiler threads at most, and as many glibc arenas (reserved address space):
    # the bounds then mean the same on a Raspberry Pi and on a 64-core server
    env = {**os.environ, "RAYON_NUM_THREADS": "2", "MALLOC_ARENA_MAX": "2"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hostagent.wasm.compile", str(out),
        str(bounds.memory_bytes), str(bounds.cpu_s),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env)
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(wasm), bounds.timeout_s)
    except TimeoutError:
        raise CompileRefused(f"the module did not compile within {bounds.timeout_s:g} s "
                             "(the limit)") from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())
    if proc.returncode != 0:
        raise CompileRefused(f"the module does not compile: "
                             f"{_why(proc.returncode or 0, stderr, bounds)}")


# ---------------------------------------------------------------- the child


def _bound_self(memory_bytes: int, cpu_s: int) -> None:
    """Lower this process's priority, cap it, and have it die with its parent. Linux
    does all of it; elsewhere (macOS does not enforce RLIMIT_AS) the deadline remains."""
    os.nice(10)
    limits = {resource.RLIMIT_AS: (memory_bytes, memory_bytes),
              resource.RLIMIT_CPU: (cpu_s, cpu_s + 1)}  # SIGXCPU, a second later SIGKILL
    for limit, values in limits.items():
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(limit, values)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl
        raise SystemExit(3)


def main(argv: list[str]) -> int:
    """``python -m hostagent.wasm.compile OUT MEMORY_BYTES CPU_S`` < module.wasm"""
    out, memory_bytes, cpu_s = Path(argv[0]), int(argv[1]), int(argv[2])
    _bound_self(memory_bytes, cpu_s)
    import wasmtime  # after the bounds: its engine is what they are for

    from hostagent.wasm.engine import new_engine

    wasm = sys.stdin.buffer.read()
    try:
        module = wasmtime.Module(new_engine(), wasm)
    except wasmtime.WasmtimeError as exc:  # what failed, and the innermost cause
        lines = [line.strip().split(": ", 1)[-1] if line.strip()[:1].isdigit()
                 else line.strip() for line in str(exc).splitlines()]
        lines = [line for line in lines if line and line != "Caused by:"]
        print(": ".join(dict.fromkeys([lines[0], lines[-1]])) if lines
              else type(exc).__name__, file=sys.stderr)
        return 2
    out.write_bytes(module.serialize())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
