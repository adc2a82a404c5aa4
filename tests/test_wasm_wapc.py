"""The waPC host against real modules: the examples answer, bad guests are contained.

Each guest runs in a real wasmtime store with the production engine settings (epoch
interruption); the CPU deadline is shortened so the runaway guests are stopped quickly.
"""

from __future__ import annotations

import gc
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime

from hostagent.wascc_codec import deserialize, serialize
from hostagent.wascc_codec.keyvalue import AddRequest, AddResponse
from hostagent.wascc_codec.messaging import BrokerMessage
from hostagent.wasm.engine import EpochTicker, Limits, new_engine
from hostagent.wasm.wapc import GuestError, GuestTrap, HostCallError, WapcInstance
from tests.wasmutil import wat

pytestmark = pytest.mark.timeout(60)


_TICKERS: dict[int, EpochTicker] = {}


@pytest.fixture(scope="module")
def engine() -> Iterator[wasmtime.Engine]:
    engine = new_engine()
    ticker = _TICKERS[id(engine)] = EpochTicker(engine)
    yield engine
    ticker.close()
    del _TICKERS[id(engine)]


def deliver(body: bytes, reply_to: str = "_INBOX.r") -> bytes:
    """The ``DeliverMessage`` payload of a message (waSCC's BrokerMessage)."""
    return serialize(BrokerMessage(subject="demo", reply_to=reply_to, body=body))


def published(calls: list[tuple[str, str, str, bytes]]) -> list[tuple[str, bytes]]:
    """(subject, body) of each ``Publish`` the guest made."""
    out = []
    for _binding, namespace, op, payload in calls:
        if (namespace, op) == ("wascc:messaging", "Publish"):
            msg = deserialize(BrokerMessage, payload)
            out.append((msg.subject, msg.body))
    return out


def instance(engine: wasmtime.Engine, name: str, *, timeout: float = 1.0,
             calls: list[tuple[str, str, str, bytes]] | None = None) -> WapcInstance:
    """``name`` with a host that records its calls, publishes nothing and counts
    keyvalue ``Add`` in a dict (as the wascc:keyvalue provider would)."""
    store: dict[str, int] = {}

    def host_call(binding: str, namespace: str, op: str, payload: bytes) -> bytes:
        if calls is not None:
            calls.append((binding, namespace, op, payload))
        if (namespace, op) == ("wascc:messaging", "Publish"):
            return b""
        if (namespace, op) != ("wascc:keyvalue", "Add"):
            raise HostCallError(f"no {namespace} {op} here")
        add = deserialize(AddRequest, payload)
        store[add.key] = store.get(add.key, 0) + add.value
        return serialize(AddResponse(value=store[add.key]))

    module = wasmtime.Module(engine, wat(name))
    return WapcInstance(engine, module, name=name, host_call=host_call,
                        limits=Limits(call_timeout_s=timeout), ticker=_TICKERS[id(engine)])


@pytest.mark.parametrize("body", [b"", b"hello", bytes(range(256)) * 1024])
def test_echo_publishes_its_input_to_the_reply_subject(engine: wasmtime.Engine,
                                                       body: bytes) -> None:
    calls: list[tuple[str, str, str, bytes]] = []
    instance(engine, "echo", calls=calls).call("DeliverMessage", deliver(body))
    assert published(calls) == [("_INBOX.r", body)]


def test_echo_refuses_an_unknown_operation(engine: wasmtime.Engine) -> None:
    calls: list[tuple[str, str, str, bytes]] = []
    echo = instance(engine, "echo", calls=calls)
    with pytest.raises(GuestError, match="unknown operation"):
        echo.call("Launch", b"x")
    echo.call("DeliverMessage", deliver(b"still fine"))
    assert published(calls) == [("_INBOX.r", b"still fine")]


def test_counter_increments_through_host_calls(engine: wasmtime.Engine) -> None:
    calls: list[tuple[str, str, str, bytes]] = []
    counter = instance(engine, "counter", calls=calls)
    for body in (b"", b"", b"", b"other"):
        counter.call("DeliverMessage", deliver(body))
    assert [b for _, b in published(calls)] == [b"1", b"2", b"3", b"1"]
    adds = [deserialize(AddRequest, p) for _, ns, op, p in calls if op == "Add"]
    assert [(a.key, a.value) for a in adds] == [("count", 1)] * 3 + [("other", 1)]


@pytest.mark.parametrize("timeout", [0.1, 0.5])
def test_a_guest_that_loops_is_stopped_by_its_deadline(engine: wasmtime.Engine,
                                                        timeout: float) -> None:
    looping = instance(engine, "loop", timeout=timeout)
    started = time.monotonic()
    with pytest.raises(GuestError, match="CPU deadline"):
        looping.call("HandleMessage", b"")
    elapsed = time.monotonic() - started
    assert timeout * 0.5 <= elapsed < timeout + 2.0
    # the next call gets a fresh deadline and is stopped again
    with pytest.raises(GuestError, match="CPU deadline"):
        looping.call("HandleMessage", b"")


def test_a_guest_that_loops_in_init_fails_to_instantiate(engine: wasmtime.Engine) -> None:
    started = time.monotonic()
    with pytest.raises(GuestError, match=r"wapc_init.*CPU deadline"):
        instance(engine, "loop_init", timeout=0.2)
    assert time.monotonic() - started < 3.0


def test_a_trap_is_reported_and_the_instance_keeps_serving(engine: wasmtime.Engine) -> None:
    trap = instance(engine, "trap")
    for _ in range(2):
        with pytest.raises(GuestError, match="unreachable"):
            trap.call("HandleMessage", b"")


def test_a_module_importing_something_unknown_is_refused(engine: wasmtime.Engine) -> None:
    with pytest.raises(GuestError, match="__launch_missiles"):
        instance(engine, "bad_import")


def test_a_module_over_the_memory_limit_is_refused(engine: wasmtime.Engine) -> None:
    with pytest.raises(GuestError, match="memory"):
        instance(engine, "hog")


def test_a_host_call_error_reaches_the_guest() -> None:
    engine = new_engine()  # no ticker needed: nothing loops
    module = wasmtime.Module(engine, wat("counter"))

    def refuse(binding: str, namespace: str, op: str, payload: bytes) -> bytes:
        raise HostCallError("not bound here")

    counter = WapcInstance(engine, module, name="counter", host_call=refuse)
    with pytest.raises(GuestError, match="not bound here"):
        counter.call("DeliverMessage", deliver(b""))


def test_the_epoch_ticker_sleeps_while_no_guest_runs() -> None:
    """No ticks while idle (an idle host costs no CPU); ticks while a guest runs."""
    ticker = EpochTicker(new_engine())
    try:
        idle = threading.Event()
        idle.wait(0.2)  # a window in which a 100 Hz ticker would have ticked ~20 times
        assert ticker.ticks == 0
        deadline = time.monotonic() + 10.0
        with ticker.running():
            while ticker.ticks < 3 and time.monotonic() < deadline:
                idle.wait(0.01)
        assert ticker.ticks >= 3
        settled = ticker.ticks
        idle.wait(0.2)
        assert ticker.ticks <= settled + 1  # at most one tick racing the exit
    finally:
        ticker.close()


# ---------------------------------------------------------------- hostile guests (issue 12)

HOSTILE = Path(__file__).resolve().parent / "hostile"


def hostile(engine: wasmtime.Engine, name: str, *, limits: Limits | None = None,
            host_call: Callable[[str, str, str, bytes], bytes] | None = None) -> WapcInstance:
    """``tests/hostile/<name>.wat``, instantiated."""
    module = wasmtime.Module(engine, wasmtime.wat2wasm((HOSTILE / f"{name}.wat").read_text()))
    return WapcInstance(engine, module, name=name, host_call=host_call or _refuse,
                        limits=limits or Limits(call_timeout_s=1.0),
                        ticker=_TICKERS[id(engine)])


def _refuse(binding: str, namespace: str, op: str, payload: bytes) -> bytes:
    raise HostCallError(f"no {namespace} here")


def inline(engine: wasmtime.Engine, body: str, *, limits: Limits | None = None,
           console: Callable[[str], None] | None = None) -> WapcInstance:
    """A module of the wapc imports, one page of memory, and ``body``."""
    imports = "".join(
        f'(import "wapc" "{name}" (func ${name} (param {" i32" * params})))'
        for name, params in (("__guest_request", 2), ("__guest_response", 2),
                             ("__guest_error", 2), ("__host_response", 1),
                             ("__host_error", 1), ("__console_log", 2)))
    source = f'(module {imports} (memory (export "memory") 1) {body})'
    module = wasmtime.Module(engine, wasmtime.wat2wasm(source))
    return WapcInstance(engine, module, name="inline", host_call=_refuse, limits=limits,
                        console=console, ticker=_TICKERS[id(engine)])


def guest_call(*calls: str) -> str:
    return ('(func (export "__guest_call") (param i32 i32) (result i32) '
            f'{" ".join(calls)} (i32.const 1))')


@pytest.mark.parametrize(("call", "words"), [
    ("(call $__guest_request (i32.const -13) (i32.const 0))",
     "__guest_request: pointer 4294967283 + length 13 is outside the 65536-byte memory"),
    ("(call $__guest_request (i32.const 65535) (i32.const 0))",
     "__guest_request: pointer 65535 + length 13 is outside the 65536-byte memory"),
    ("(call $__guest_response (i32.const -16) (i32.const 32))",
     "__guest_response: pointer 4294967280 + length 32 is outside"),
    ("(call $__guest_response (i32.const 0) (i32.const -1))",
     "__guest_response: pointer 0 + length 4294967295 is outside"),
    ("(call $__guest_error (i32.const 65536) (i32.const 1))",
     "__guest_error: pointer 65536 + length 1 is outside"),
    ("(call $__console_log (i32.const 65530) (i32.const 100))",
     "__console_log: pointer 65530 + length 100 is outside"),
    ("(call $__host_response (i32.const 65537))",
     "__host_response: pointer 65537 + length 0 is outside"),
    ("(call $__host_error (i32.const -1))",
     "__host_error: pointer 4294967295 + length 0 is outside"),
])
def test_a_pointer_outside_the_memory_traps_naming_the_import(
        engine: wasmtime.Engine, call: str, words: str) -> None:
    """Pointers and lengths are unsigned 32-bit and checked against the memory: a bad
    one traps the guest (the runtime then stops it), it never reads or writes elsewhere."""
    guest = inline(engine, guest_call(call))
    with pytest.raises(GuestTrap, match=re.escape(words)):
        guest.call("HandleMessage", b"hello")
    memory = guest.instance.exports(guest.store)["memory"]
    assert isinstance(memory, wasmtime.Memory)
    assert bytes(memory.read(guest.store, 0, 65536)) == bytes(65536)  # nothing written


def test_a_bad_pointer_in_wapc_init_refuses_the_start(engine: wasmtime.Engine) -> None:
    body = ('(func (export "wapc_init") (call $__console_log (i32.const -1) (i32.const 2)))'
            + guest_call())
    with pytest.raises(GuestTrap, match=r"wapc_init: trapped: __console_log: pointer "
                                        r"4294967295 \+ length 2"):
        inline(engine, body)


def test_the_hostile_module_traps_on_each_import(engine: wasmtime.Engine) -> None:
    """tests/hostile/negative_pointer.wat: the delivered body's length picks the import."""
    expected = {0: "__guest_request: pointer 4294967283 + length 14",
                1: "__guest_response: pointer 4294967280 + length 32",
                2: "__console_log: pointer 65530 + length 100",
                3: "__host_error: pointer 4294967295 + length 15"}  # "no nowhere here"
    for length, words in expected.items():
        guest = hostile(engine, "negative_pointer")
        with pytest.raises(GuestTrap, match=re.escape(words)):
            guest.call("DeliverMessage", serialize(
                BrokerMessage(subject="t", reply_to="", body=b"x" * length)))


def test_a_console_line_is_cut_at_4_kib(engine: wasmtime.Engine) -> None:
    lines: list[str] = []
    guest = inline(engine, guest_call("(call $__console_log (i32.const 0) (i32.const 60000))"),
                   console=lines.append)
    guest.call("HandleMessage", b"")
    assert [len(line) for line in lines] == [4096]


def test_an_exception_in_an_import_traps_naming_it(engine: wasmtime.Engine) -> None:
    def broken(text: str) -> None:
        raise RuntimeError("the log is gone")

    guest = inline(engine, guest_call("(call $__console_log (i32.const 0) (i32.const 1))"),
                   console=broken)
    with pytest.raises(GuestTrap, match="__console_log: RuntimeError: the log is gone"):
        guest.call("HandleMessage", b"")


# ---------------------------------------------------------------- store limits

@pytest.mark.parametrize(("declarations", "words"), [
    ("(memory 1) (memory 1)", "memory count too high"),
    ("(table 1 funcref) (table 1 funcref)", "table count too high"),
    ("(table 20000 funcref)", "table"),
])
def test_more_than_the_store_allows_does_not_instantiate(
        engine: wasmtime.Engine, declarations: str, words: str) -> None:
    source = f'(module {declarations} (memory (export "memory") 1) {guest_call()})'
    module = wasmtime.Module(engine, wasmtime.wat2wasm(source))
    with pytest.raises(GuestError, match=words):
        WapcInstance(engine, module, name="greedy", host_call=_refuse)


def test_sixteen_memories_are_refused(engine: wasmtime.Engine) -> None:
    with pytest.raises(GuestError, match=r"cannot instantiate many_memories: .*memory count"):
        hostile(engine, "many_memories")


def test_table_grow_past_the_limit_fails_in_the_guest(engine: wasmtime.Engine) -> None:
    rss = _rss()
    with pytest.raises(GuestError, match=r"table\.grow refused"):
        hostile(engine, "table_grow").call("HandleMessage", b"")
    assert _rss() - rss < 32 << 20  # 100 million elements would be 800 MB


@pytest.mark.parametrize("feature", [
    '(memory (export "memory") 1 2 shared)',  # threads: shared memory
    '(memory (export "memory") 1) (type $a (array i8)) '  # GC: a heap of its own
    '(func (drop (array.new_default $a (i32.const 1))))',
    '(memory (export "memory") 1) (tag $t) (func (throw $t))',  # exceptions
])
def test_proposals_that_allocate_outside_the_memory_are_refused(
        engine: wasmtime.Engine, feature: str) -> None:
    source = f"(module {feature} {guest_call()})"
    with pytest.raises((wasmtime.WasmtimeError, GuestError)):  # compile or instantiate
        WapcInstance(engine, wasmtime.Module(engine, wasmtime.wat2wasm(source)), name="new",
                     host_call=_refuse)


def test_the_limits_reach_the_store(engine: wasmtime.Engine) -> None:
    """A smaller memory limit and table size from Limits (per-deployment overrides)."""
    small = Limits(memory_bytes=2 << 16, table_elements=5)
    source = f'(module (memory (export "memory") 3) {guest_call()})'
    with pytest.raises(GuestError, match="memory"):
        WapcInstance(engine, wasmtime.Module(engine, wasmtime.wat2wasm(source)),
                     name="big", host_call=_refuse, limits=small)
    source = f'(module (table 6 funcref) (memory (export "memory") 1) {guest_call()})'
    with pytest.raises(GuestError, match="table"):
        WapcInstance(engine, wasmtime.Module(engine, wasmtime.wat2wasm(source)),
                     name="big", host_call=_refuse, limits=small)
    with pytest.raises(ValueError, match="invalid limits"):
        Limits(memory_bytes=0)


def test_the_real_wascc_modules_fit_the_limits(engine: wasmtime.Engine) -> None:
    """Built by waSCC's Rust toolchain: one table of ~200 functions, 17 pages."""
    modules = sorted(WASCC.glob("*.wasm")) if WASCC.is_dir() else []
    if not modules:
        pytest.skip(f"{WASCC} is absent (shared fixtures)")
    for path in modules:
        module = wasmtime.Module(engine, path.read_bytes())
        guest = WapcInstance(engine, module, name=path.stem, host_call=_refuse)
        with pytest.raises(GuestError, match="guest error"):  # not MessagePack: refused
            guest.call("HandleRequest", b"\x80")


WASCC = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "wascc"


# ---------------------------------------------------------------- instances are freed

@pytest.mark.parametrize("name", ["echo", "counter", "trap", "crash_hog"])
def test_an_instance_is_freed_once_dropped(engine: wasmtime.Engine, name: str) -> None:
    """Without the collector: the imports hold the instance weakly, and a trap's frames
    are cleared, so no reference cycle keeps a stopped or crashed instance (and its
    memory) alive."""
    path = HOSTILE / f"{name}.wat"
    wasm = wasmtime.wat2wasm(path.read_text()) if path.exists() else wat(name)
    guest = WapcInstance(engine, wasmtime.Module(engine, wasm), name=name,
                         host_call=lambda *_: b"1", ticker=_TICKERS[id(engine)])
    try:
        guest.call("HandleMessage", b"x")
    except GuestError:
        pass
    ref = weakref.ref(guest)
    gc.disable()
    try:
        del guest
        assert ref() is None
    finally:
        gc.enable()


# ---------------------------------------------------------------- time in host calls

def test_time_waiting_in_a_host_call_does_not_count(engine: wasmtime.Engine) -> None:
    """docs/actors.md: only the guest's own instructions count against the deadline. A
    host call that takes three deadlines (a slow provider on another host) is fine."""
    waited = threading.Event()

    sent: list[bytes] = []

    def slow(binding: str, namespace: str, op: str, payload: bytes) -> bytes:
        waited.wait(0.3)  # the slow provider under test, not a synchronisation
        if op == "Publish":
            sent.append(deserialize(BrokerMessage, payload).body)
            return b""
        return serialize(AddResponse(value=7))

    counter = WapcInstance(engine, wasmtime.Module(engine, wat("counter")), name="counter",
                           host_call=slow, limits=Limits(call_timeout_s=0.2),
                           ticker=_TICKERS[id(engine)])
    counter.call("DeliverMessage", deliver(b""))
    assert sent == [b"7"]
    # ... while Limits.host_wait_s lasts: with none, the wait counts and the guest traps
    strict = WapcInstance(engine, wasmtime.Module(engine, wat("counter")), name="counter",
                          host_call=slow, limits=Limits(call_timeout_s=0.2, host_wait_s=0),
                          ticker=_TICKERS[id(engine)])
    with pytest.raises(GuestTrap, match="CPU deadline"):
        strict.call("DeliverMessage", deliver(b""))


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_trap_never_reports_another_instances_fault(engine: wasmtime.Engine) -> None:
    """wasmtime-py hands an import's exception back through one global, which a trap on
    another thread may take first: each instance keeps its own fault, so one that traps in
    an import always names it, and one whose trap met another's fault never names that."""
    bad = guest_call("(call $__guest_request (i32.const -1) (i32.const 0))")
    trap = '(func (export "__guest_call") (param i32 i32) (result i32) unreachable)'
    seen: dict[str, set[str]] = {"bad": set(), "trap": set()}

    def run(kind: str, body: str) -> None:
        guest = inline(engine, body)
        for _ in range(1500):
            try:
                guest.call("x", b"")
            except GuestTrap as exc:
                seen[kind].add(str(exc).split("trapped: ", 1)[1])

    threads = [threading.Thread(target=run, args=(kind, body))
               for kind, body in (("bad", bad), ("trap", trap)) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["bad"] == {"__guest_request: pointer 4294967295 + length 1 is outside the "
                           "65536-byte memory"}
    assert seen["trap"] <= {"wasm trap: wasm `unreachable` instruction executed",
                            "trapped while another instance's import failed (reason lost)"}
