"""The waPC host against real modules: the examples answer, bad guests are contained.

Each guest runs in a real wasmtime store with the production engine settings (epoch
interruption); the CPU deadline is shortened so the runaway guests are stopped quickly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import wasmtime

from hostagent.wasm.wapc import (
    EpochTicker,
    GuestError,
    HostCallError,
    Limits,
    WapcInstance,
    new_engine,
)
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


def instance(engine: wasmtime.Engine, name: str, *, timeout: float = 1.0,
             calls: list[tuple[str, str, str, bytes]] | None = None) -> WapcInstance:
    store: dict[str, int] = {}

    def host_call(binding: str, namespace: str, op: str, payload: bytes) -> bytes:
        if calls is not None:
            calls.append((binding, namespace, op, payload))
        if namespace != "wascc:keyvalue" or op != "Incr":
            raise HostCallError(f"no {namespace} {op} here")
        key = payload.decode()
        store[key] = store.get(key, 0) + 1
        return str(store[key]).encode()

    module = wasmtime.Module(engine, wat(name))
    return WapcInstance(engine, module, name=name, host_call=host_call,
                        limits=Limits(call_timeout_s=timeout), ticker=_TICKERS[id(engine)])


@pytest.mark.parametrize("body", [b"", b"hello", bytes(range(256)) * 1024])
def test_echo_returns_its_input(engine: wasmtime.Engine, body: bytes) -> None:
    assert instance(engine, "echo").call("HandleMessage", body) == body


def test_echo_refuses_an_unknown_operation(engine: wasmtime.Engine) -> None:
    echo = instance(engine, "echo")
    with pytest.raises(GuestError, match="unknown operation"):
        echo.call("Launch", b"x")
    assert echo.call("HandleMessage", b"still fine") == b"still fine"


def test_counter_increments_through_host_calls(engine: wasmtime.Engine) -> None:
    calls: list[tuple[str, str, str, bytes]] = []
    counter = instance(engine, "counter", calls=calls)
    assert [counter.call("HandleMessage", b"") for _ in range(3)] == [b"1", b"2", b"3"]
    assert counter.call("HandleMessage", b"other") == b"1"
    assert calls[0] == ("default", "wascc:keyvalue", "Incr", b"count")
    assert calls[-1] == ("default", "wascc:keyvalue", "Incr", b"other")


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
        counter.call("HandleMessage", b"")


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
