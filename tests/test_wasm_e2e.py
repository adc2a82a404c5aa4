"""End to end with real workloads (issue 6 acceptance): signed WebAssembly actors from the
gantry registry, run by host processes with the wasm runtime, placed by the agent from git,
answering NATS requests through the messaging provider.

Everything is real: nats-server, host processes, the agent process, a git repository. The
example actors are the ones `latticectl up` runs (examples/actors, demo seeds).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import wasmtime
from nats.aio.msg import Msg

from cli.examples import EXAMPLE_ACTORS, ExampleActor, build_examples
from gitsync.status import read_status
from lattice.claims import (
    MAX_MODULE_SIZE,
    ClaimsError,
    custom_section,
    public_key,
    sign_module,
    verify_module,
)
from lattice.gantry import Gantry
from lattice.ids import encode_module_key
from lattice.protocol import ActorEvent, CloudEvent, EventType, Subjects
from lattice.status import Phase, Reason
from tests.cliutil import clean_env, run
from tests.helpers import eventually
from tests.hostproc import EventRecorder
from tests.lattice_e2e import HEARTBEAT, Lattice, count_hosts, lat, repo, where
from tests.wasmutil import seed

__all__ = ["lat", "repo"]  # fixtures

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

WASM = ["--runtime", "wasm"]
KEYS = EXAMPLE_ACTORS / "keys"


@pytest.fixture(scope="module")
def examples() -> dict[str, ExampleActor]:
    return {a.name: a for a in build_examples()}


async def push(lat: Lattice, *modules: bytes) -> None:
    gantry = Gantry(lat.nc, lat.lattice)
    for wasm in modules:
        await gantry.push(wasm)


def deployment(name: str, actor: str, *, replicas: int = 1,
               providers: tuple[tuple[str, str], ...] = (("wascc:messaging", "nats"),)
               ) -> dict[str, object]:
    return {"kind": "Deployment", "metadata": {"name": name}, "spec": {
        "actors": [{"id": actor, "replicas": replicas}],
        "providers": [{"id": cap, "vendor_id": vendor} for cap, vendor in providers]}}


def bindings(name: str, actor: str, subject: str, *extra: tuple[str, str]
             ) -> dict[str, object]:
    specs: list[dict[str, object]] = [{"capability_id": "wascc:messaging", "actor": actor,
                                       "vendor_id": "nats", "values": {"SUBSCRIPTION": subject}}]
    specs += [{"capability_id": cap, "actor": actor, "vendor_id": vendor}
              for cap, vendor in extra]
    return {"kind": "BindingSet", "metadata": {"name": name}, "spec": {"bindings": specs}}


async def wasm_hosts(lat: Lattice, n: int = 3) -> None:
    for i in range(n):
        lat.pool.spawn(labels={"zone": "abc"[i % 3]}, name=f"w{i}", extra_args=WASM)
    await eventually(lambda: count_hosts(lat, n), timeout=30, message=f"{n} wasm hosts")


async def answer(lat: Lattice, subject: str, body: bytes, timeout: float = 2.0) -> bytes | None:
    """The reply to one request, or None (no responders yet, or a timeout)."""
    try:
        msg = await lat.nc.request(subject, body, timeout=timeout)
    except Exception:  # NoRespondersError / TimeoutError while the lattice converges
        return None
    return msg.data if not msg.headers or not msg.headers.get("Nats-Service-Error") else None


async def test_echo_answers_through_the_lattice_and_survives_its_host(
        lat: Lattice, examples: dict[str, ExampleActor]) -> None:
    echo = examples["echo"]
    await push(lat, echo.wasm)
    await wasm_hosts(lat)
    sha = lat.commit({"deployments/echo.yaml": deployment("echo", echo.claims.subject),
                      "bindingsets/echo.yaml": bindings("echo", echo.claims.subject,
                                                        "demo.echo")}, "echo")
    agent = lat.agent()
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=45,
                     message=lambda: f"echo Synced\n{agent.log()[-3000:]}")
    reply = await eventually(lambda: answer(lat, "demo.echo", b"hello lattice"), timeout=15,
                             message="echo answers")
    assert reply == b"hello lattice"
    env = {**clean_env(lat.tmp), "LATTICECTL_NATS_URL": lat.url}
    said = await asyncio.to_thread(run, env, "request", "demo.echo", "via latticectl")
    assert (said.exit_code, said.output.strip()) == (0, "via latticectl"), said.output

    [victim] = where(await lat.inventories(), actor=echo.claims.subject)
    host = next(h for h in lat.pool.hosts if h.name == victim)
    host.kill()
    loop = asyncio.get_running_loop()
    killed = loop.time()
    gone_at: list[float] = []  # when the agent's log first says the host is gone

    async def answered_elsewhere() -> bool:
        if not gone_at and "considered gone" in agent.log():
            gone_at.append(loop.time())
        names = where(await lat.inventories(), actor=echo.claims.subject)
        if not names or victim in names:
            return False
        return await answer(lat, "demo.echo", b"again", timeout=0.5) == b"again"

    await eventually(answered_elsewhere, timeout=30, message="echo answers from another host")
    took = loop.time() - killed
    # acceptance (issue 6): answered again within the heartbeat timeout (3 missed) + 2 s
    # of the kill -9, measured from the kill (1.5-1.7 s here, with four busy loops on two
    # cores too); the time the agent declared the host gone is there to read a failure
    gone = f"declared gone after {gone_at[0] - killed:.2f} s" if gone_at else "gone unseen"
    assert took < 3 * HEARTBEAT + 2, f"failover took {took:.2f} s ({gone})"


async def test_counter_counts_through_keyvalue(
        lat: Lattice, examples: dict[str, ExampleActor]) -> None:
    counter = examples["counter"]
    await push(lat, counter.wasm)
    await wasm_hosts(lat, 2)
    aid = counter.claims.subject
    sha = lat.commit({
        "deployments/counter.yaml": deployment(
            "counter", aid, providers=(("wascc:messaging", "nats"), ("wascc:keyvalue", "memory"))),
        "bindingsets/counter.yaml": bindings("counter", aid, "demo.counter",
                                             ("wascc:keyvalue", "memory")),
    }, "counter")
    agent = lat.agent()
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=45,
                     message=lambda: f"counter Synced\n{agent.log()[-3000:]}")
    first = await eventually(lambda: answer(lat, "demo.counter", b""), timeout=15,
                             message="counter answers")
    counts = [first] + [await answer(lat, "demo.counter", b"", timeout=5) for _ in range(2)]
    assert counts == [b"1", b"2", b"3"]


async def test_refusals_are_degraded_with_the_reason_and_hosts_stay_up(
        lat: Lattice, tmp_path: Path) -> None:
    """A module that expired after it was pushed, and one that is not in the registry:
    the host refuses to start them, stays up, and the reason reaches describe."""
    account = (KEYS / "account.nk").read_bytes()
    module = (KEYS / "echo.nk").read_bytes()
    wasm = bytes(wasmtime.wat2wasm((EXAMPLE_ACTORS / "echo.wat").read_text()))
    soon = int(time.time()) + 2
    signed, claims = sign_module(wasm, account_seed=account, module_seed=module, name="brief",
                                 capabilities=["wascc:messaging"], expires=soon)
    await push(lat, signed)

    def expired() -> bool:
        try:
            verify_module(signed)
        except ClaimsError:
            return True
        return False

    await eventually(expired, timeout=10, message="the pushed module expires")
    await wasm_hosts(lat, 1)
    missing = encode_module_key(bytes([7]) * 32)  # a valid id, never pushed
    sha = lat.commit({"deployments/brief.yaml": deployment("brief", claims.subject,
                                                           providers=()),
                      "deployments/ghost.yaml": deployment("ghost", missing, providers=())},
                     "refusals")
    agent = lat.agent()
    await eventually(lambda: lat.note_phase(sha, Phase.DEGRADED), timeout=45,
                     message=lambda: f"Degraded\n{agent.log()[-3000:]}")
    expired_words, ghost_words = "the claims expired at", f"actor {missing} is not in the registry"

    async def refused() -> tuple[str, str] | None:
        # the host's refusal, once the agent's auction reached it (a first pass on a
        # loaded machine may report "no host answered the auction", retried after backoff)
        status = await lat.status_of(sha, Phase.DEGRADED)
        brief = status.deployments["brief"].conditions[0].message
        ghost = status.deployments["ghost"].conditions[0].message
        return (brief, ghost) if expired_words in brief and ghost_words in ghost else None

    await eventually(refused, timeout=30, message=lambda: f"both refusals in status\n"
                     f"{agent.log()[-3000:]}")
    assert all(h.alive() for h in lat.pool.hosts)
    env = {**clean_env(tmp_path), "LATTICECTL_REPO": str(lat.repo.working_tree_dir)}
    await describes(env, "deployment", "brief", expired_words)
    await describes(env, "deployment", "ghost", ghost_words)


async def test_the_lattice_trust_policy_refuses_then_admits_without_a_restart(
        lat: Lattice, examples: dict[str, ExampleActor], tmp_path: Path) -> None:
    """`latticectl trust` against real hosts and the agent: an actor of an untrusted
    account is Degraded with the reason; trusting its account lets the agent's retry start
    it, with no host or agent restarted."""
    echo = examples["echo"]
    await push(lat, echo.wasm)
    env = {**clean_env(tmp_path), "LATTICECTL_NATS_URL": lat.url,
           "LATTICECTL_LATTICE": lat.lattice}
    someone = public_key(seed("someone else", "A"), "A")  # not the demo account
    told = await asyncio.to_thread(run, env, "trust", "add", someone)
    assert told.exit_code == 0, told.output
    await wasm_hosts(lat, 1)
    sha = lat.commit({"deployments/echo.yaml": deployment("echo", echo.claims.subject),
                      "bindingsets/echo.yaml": bindings("echo", echo.claims.subject,
                                                        "demo.trusted")}, "echo")
    agent = lat.agent()
    await eventually(lambda: lat.note_phase(sha, Phase.DEGRADED), timeout=45,
                     message=lambda: f"Degraded\n{agent.log()[-3000:]}")

    async def untrusted() -> str | None:
        # the host's refusal, once an auction reached it (on a loaded machine the first
        # pass may report "no host answered the auction", retried after backoff)
        status = await lat.status_of(sha, Phase.DEGRADED)
        reason = status.deployments["echo"].conditions[0].message
        return reason if ("the lattice does not trust" in reason
                          and echo.claims.issuer in reason) else None

    await eventually(untrusted, timeout=30,
                     message=lambda: f"the trust refusal in status\n{agent.log()[-3000:]}")
    told = await asyncio.to_thread(run, env, "trust", "add", echo.claims.issuer)
    assert told.exit_code == 0, told.output
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=60,
                     message=lambda: f"Synced once trusted\n{agent.log()[-3000:]}")
    reply = await eventually(lambda: answer(lat, "demo.trusted", b"admitted"), timeout=15,
                             message="echo answers")
    assert reply == b"admitted"
    assert all(h.alive() for h in lat.pool.hosts) and agent.alive()


WASM_TESTS = Path(__file__).resolve().parent / "wasm"


def _signed(wat: str, n: int, caps: tuple[str, ...] = ("wascc:messaging",)) -> tuple[bytes, str]:
    """``wat`` compiled and signed by the demo account with module seed ``n``; (wasm, id)."""
    wasm = bytes(wasmtime.wat2wasm(wat))
    signed, claims = sign_module(wasm, account_seed=(KEYS / "account.nk").read_bytes(),
                                 module_seed=bytes([n]) * 32, name=f"hostile-{n}",
                                 capabilities=list(caps))
    return signed, claims.subject


async def test_hostile_modules_are_refused_with_reasons_and_the_host_stays_up(
        lat: Lattice, tmp_path: Path) -> None:
    """Modules written straight into the registry bucket (as a hostile or broken pusher
    would, bypassing `latticectl push`): the host verifies again and refuses each with a
    reason the status and `latticectl describe` show; the host and a good actor carry on."""
    echo_wat = (EXAMPLE_ACTORS / "echo.wat").read_text()
    counter_wasm = bytes(wasmtime.wat2wasm((EXAMPLE_ACTORS / "counter.wat").read_text()))
    cases: dict[str, tuple[bytes, str, str]] = {}  # name -> (module, id, the reason's words)
    signed, aid = _signed(echo_wat, 11)
    bad_sig = bytearray(signed)
    bad_sig[-3] = ord("A") if bad_sig[-3] != ord("A") else ord("B")  # inside the signature
    cases["badsig"] = (bytes(bad_sig), aid, "the signature does not verify with the issuer's key")
    signed, aid = _signed(echo_wat, 12)
    swapped = counter_wasm + signed[len(bytes(wasmtime.wat2wasm(echo_wat))):]  # other code
    cases["otherhash"] = (swapped, aid, "differs from the signed hash")
    cases["loopinit"] = (*_signed((WASM_TESTS / "loop_init.wat").read_text(), 13),
                         "wapc_init: trapped: ran past its CPU deadline")
    cases["hog"] = (*_signed((WASM_TESTS / "hog.wat").read_text(), 14),
                    "exceeds memory limits")
    trap_init = ('(module (memory (export "memory") 1) (func (export "wapc_init") unreachable)'
                 ' (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 1)))')
    cases["trapinit"] = (*_signed(trap_init, 17),
                         "wapc_init: trapped: wasm trap: wasm `unreachable` instruction")
    big, aid = _signed(echo_wat, 15)
    cases["oversize"] = (big + custom_section("padding", b"\0" * MAX_MODULE_SIZE), aid,
                         f"over the limit of {MAX_MODULE_SIZE}")
    store = await Gantry(lat.nc, lat.lattice)._object_store()  # raw: no verification
    for module, aid, _ in cases.values():
        await store.put(aid, module)
    good, good_id = _signed(echo_wat, 16)
    await push(lat, good)
    await wasm_hosts(lat, 1)
    files: dict[str, dict[str, object] | None] = {
        f"deployments/{name}.yaml": deployment(name, aid, providers=())
        for name, (_, aid, _) in cases.items()}
    files["deployments/good.yaml"] = deployment("good", good_id)
    # the good actor claims only messaging: a keyvalue binding must be refused
    files["bindingsets/good.yaml"] = bindings("good", good_id, "demo.good",
                                              ("wascc:keyvalue", "memory"))
    unclaimed = (f"actor {good_id} does not claim capability wascc:keyvalue "
                 "(it claims: wascc:messaging)")
    files["deployments/kv.yaml"] = deployment("kv", good_id, providers=(
        ("wascc:keyvalue", "memory"),))
    async with EventRecorder(lat.nc, lat.lattice) as bus:
        lat.commit(files, "hostile")
        agent = lat.agent()
        seen: dict[str, str] = {}

        async def all_refused_with_reasons() -> bool:
            # a refusal may first show as a transient timeout (the host is busy verifying a
            # 16 MiB module); the reason is right once the retry is answered
            st = await asyncio.to_thread(read_status, lat.repo)
            if st is None or "good" not in st.bindingsets:
                return False
            seen.update({n: st.deployments[n].conditions[0].message for n in cases
                         if n in st.deployments})
            seen["kv binding"] = st.bindingsets["good"].conditions[0].message
            return all(words in seen.get(n, "") for n, (_, _, words) in cases.items()) and (
                unclaimed in seen["kv binding"])

        try:
            await eventually(all_refused_with_reasons, timeout=90, interval=0.5,
                             message="every refusal with its reason")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast seen: {seen}\n{agent.log()[-2000:]}") from None
        [refused, *_] = await bus.wait_for(EventType.BINDING_PUT_FAILED,
                                           where=lambda d: unclaimed in d["reason"])
        assert refused.data["capability_id"] == "wascc:keyvalue" and "values" not in refused.data
    assert all(h.alive() for h in lat.pool.hosts)
    assert await answer(lat, "demo.good", b"still here") == b"still here"
    env = {**clean_env(tmp_path), "LATTICECTL_REPO": str(lat.repo.working_tree_dir)}
    described = {name: ("deployment", name, words) for name, (_, _, words) in cases.items()}
    described["kv binding"] = ("bindingset", "good", unclaimed)
    for kind, name, words in described.values():
        await describes(env, kind, name, words)


async def describes(env: dict[str, str], kind: str, name: str, words: str) -> str:
    """`latticectl describe KIND NAME` once it shows ``words`` (in its conditions: the
    status branch may trail the status a test polled)."""
    last = ""

    def shown() -> bool:
        nonlocal last
        result = run(env, "describe", kind, name)
        assert result.exit_code == 0, result.output
        last = result.output
        conditions = last.partition("\nConditions:\n")[2].partition("\nHistory:")[0]
        return words in conditions

    try:
        await eventually(lambda: asyncio.to_thread(shown), timeout=15,
                         message=f"describe {kind} {name} shows {words!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{last}") from None
    return last


async def test_an_actor_that_traps_in_a_call_is_stopped_and_reported(
        lat: Lattice, examples: dict[str, ExampleActor]) -> None:
    """The caller gets an error, the instance is stopped with the trap as the reason of
    its ``actor_stopped`` event (the agent then starts it again), and the host and its
    other actors carry on."""
    echo = examples["echo"]
    trap, trap_id = _signed((WASM_TESTS / "trap.wat").read_text(), 18)
    await push(lat, echo.wasm, trap)
    await wasm_hosts(lat, 1)
    sha = lat.commit({
        "deployments/echo.yaml": deployment("echo", echo.claims.subject),
        "bindingsets/echo.yaml": bindings("echo", echo.claims.subject, "demo.echo"),
        "deployments/trap.yaml": deployment("trap", trap_id),
        "bindingsets/trap.yaml": bindings("trap", trap_id, "demo.trap"),
    }, "trap")
    agent = lat.agent()
    await eventually(lambda: lat.note_phase(sha, Phase.SYNCED), timeout=45,
                     message=lambda: f"Synced\n{agent.log()[-3000:]}")
    stopped: list[ActorEvent] = []

    async def on_stopped(msg: Msg) -> None:
        ev = CloudEvent.model_validate_json(msg.data).typed_data()
        if isinstance(ev, ActorEvent) and ev.actor_id == trap_id:
            stopped.append(ev)

    sub = await lat.nc.subscribe(Subjects(lat.lattice).event(EventType.ACTOR_STOPPED, "*"),
                                 cb=on_stopped)
    try:
        msg = await lat.nc.request("demo.trap", b"boom", timeout=5)
        assert msg.headers and msg.headers.get("Nats-Service-Error"), msg
        await eventually(lambda: stopped, timeout=10, message="actor_stopped for the trap")
    finally:
        await sub.unsubscribe()
    assert stopped[0].reason.startswith("crashed:") and "trap" in stopped[0].reason, stopped
    assert all(h.alive() for h in lat.pool.hosts)
    assert await answer(lat, "demo.echo", b"carry on") == b"carry on"

    # restarted at once after a first crash; a second makes it a crash loop: Degraded,
    # CrashLoopBackOff, with the trap as the reason (and the next restart backs off)
    async def running_again() -> bool:
        return bool(where(await lat.inventories(), actor=trap_id))

    await eventually(running_again, timeout=20, message="the trapping actor restarted")
    await eventually(lambda: _crash_once(lat), timeout=20, message="a second crash")

    async def crash_looping() -> bool:
        st = await asyncio.to_thread(read_status, lat.repo)
        return st is not None and st.deployments["trap"].conditions[0].reason == (
            Reason.CRASH_LOOP)

    await eventually(crash_looping, timeout=30,
                     message=lambda: f"CrashLoopBackOff in status\n{agent.log()[-2000:]}")
    st = await asyncio.to_thread(read_status, lat.repo)
    assert st is not None and st.deployments["trap"].phase == Phase.DEGRADED
    assert "trap" in st.deployments["trap"].conditions[0].message
    assert st.deployments["echo"].phase == Phase.SYNCED


async def _crash_once(lat: Lattice) -> bool:
    """A request to the trapping actor that reached it (an error reply, not silence)."""
    try:
        msg = await lat.nc.request("demo.trap", b"boom", timeout=2)
    except Exception:
        return False
    return bool(msg.headers and msg.headers.get("Nats-Service-Error"))
