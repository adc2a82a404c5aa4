"""``wascc:http_server`` (issue 13): the codec's HTTP records, the provider, and waSCC's
own echo actor behind it.

* the records against bytes written as rmp-serde writes them, and the pure parts of the
  provider (binding values, the Request of a request, the HTTP response of a Response);
* the provider in this process, on a real loopback listener, with a scripted
  ``call_actor``: every bound (413, 503, 504, 400), every failure (500), rebinding,
  unbinding, a port in use;
* one real ``lattice-host --runtime wasm`` on a real nats-server, driven by commands as
  the agent would: ``tests/wasm/http_echo.wat`` answers with the exact Request it got (or
  fails, answers garbage, spins, as the request's last byte says), and waSCC's signed
  ``echo.wasm`` from ``../shared/fixtures/wascc/`` (skipped, saying why, without it)
  answers ``GET /hello?a=1`` with the request as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client

from hostagent.providers.base import ProviderContext, ProviderError
from hostagent.providers.http_server import (
    FAILED,
    MALFORMED,
    HttpServer,
    ListenerConfig,
    Unsendable,
    http_response,
    request_record,
)
from hostagent.wascc_codec import CodecError, deserialize, serialize
from hostagent.wascc_codec.http import OP_HANDLE_REQUEST, Request, Response
from lattice.gantry import Gantry
from lattice.localnats import NatsServer, free_port
from lattice.natsutil import connect
from lattice.protocol import (
    CommandOp,
    DeleteBindingCommand,
    EventType,
    Message,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
)
from tests.helpers import eventually
from tests.hostproc import EventRecorder, HostPool, HostProcess, command, ping
from tests.wasmutil import signed

pytestmark = pytest.mark.timeout(120)

HTTP = "wascc:http_server"
FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "wascc"
WASCC_ECHO = FIXTURES / "echo.wasm"
WASCC_ECHO_ID = "MB4OLDIC3TCZ4Q4TGGOVAZC43VXFE2JQVRAXQMQFXUCREOOFEKOKZTY2"
NO_FIXTURE = f"waSCC's echo.wasm is not at {WASCC_ECHO} (test data kept outside the project)"


# ------------------------------------------------------------------ the records

def test_a_request_encodes_as_waSCCs_codec_writes_it() -> None:
    req = Request(method="GET", path="/hello", query_string="a=1", header={"accept": "*/*"})
    assert serialize(req) == (  # a map of 5, camelCase keys in declaration order
        b"\x85" b"\xa6method\xa3GET" b"\xa4path\xa6/hello" b"\xabqueryString\xa3a=1"
        b"\xa6header\x81\xa6accept\xa3*/*" b"\xa4body\xc4\x00")


@pytest.mark.parametrize("record", [
    Request(method="POST", path="/p", query_string="", header={"a": "1", "b": "2"},
            body=bytes(range(256))),
    Request(method="GET", path="/", query_string="x=%20"),
    Response(status_code=404, status="Not Found"),
    Response(status_code=200, status="OK", header={"content-type": "text/plain"},
             body=b"\xff" * 70_000),
])
def test_records_round_trip(record: Request | Response) -> None:
    assert deserialize(type(record), serialize(record)) == record


def test_a_response_reads_as_rmp_serde_reads_it() -> None:
    """Array form, a str body, unknown keys, a missing header and body."""
    array = b"\x94\xcc\xc8\xa2OK\x80\xa2hi"  # [200, "OK", {}, "hi"]
    assert deserialize(Response, array) == Response(status_code=200, status="OK", body=b"hi")
    sparse = b"\x83\xaastatusCode\xcd\x01\xf4\xa6status\xa0\xa5extra\x01"
    assert deserialize(Response, sparse) == Response(status_code=500, status="")


def test_a_request_without_queryString_is_refused_as_waSCC_refuses_it() -> None:
    with pytest.raises(CodecError, match="missing field queryString"):
        deserialize(Request, b"\x82\xa6method\xa3GET\xa4path\xa1/")
    with pytest.raises(CodecError, match="statusCode"):
        deserialize(Response, b"\x82\xaastatusCode\xff\xa6status\xa0")  # -1: no u32


# ------------------------------------------------------------------ the pure parts

def test_binding_values() -> None:
    config = ListenerConfig.of({"PORT": "8080"})
    assert (config.endpoint, config.loopback, config.max_body) == ("127.0.0.1:8080", True,
                                                                   1024 * 1024)
    six = ListenerConfig.of({"PORT": "80", "ADDRESS": "::", "MAX_BODY": "10"})
    assert (six.endpoint, six.loopback, six.max_body) == ("[::]:80", False, 10)
    for values, words in [({}, "needs a PORT"), ({"PORT": "70000"}, "from 1 to 65535"),
                          ({"PORT": "1", "ADDRESS": "secret.example"}, "an IP address"),
                          ({"PORT": "1", "TIMEOUT_MS": "0"}, "TIMEOUT_MS must be")]:
        with pytest.raises(ProviderError, match=words) as refused:
            ListenerConfig.of(values)
        assert "secret" not in str(refused.value) and "70000" not in str(refused.value)


def test_the_request_record_of_a_request() -> None:
    raw = [(b"Host", b"x"), (b"X-Tag", b"a"), (b"x-tag", b"b"), (b"Cookie", b"c=1"),
           (b"cookie", b"d=2"), (b"X-Bin", b"\xff")]
    record = request_record("PUT", "/a%2Fb", "q=%20", raw, b"body")
    assert record.header == {"host": "x", "x-tag": "a, b", "cookie": "c=1; d=2",
                             "x-bin": "\ufffd"}
    assert (record.method, record.path, record.query_string, record.body) == (
        "PUT", "/a%2Fb", "q=%20", b"body")


def test_the_http_response_of_a_response() -> None:
    resp = http_response(Response(status_code=201, status="Made", body=b"x", header={
        "X-A": "1", "Content-Length": "99", "Transfer-Encoding": "chunked"}))
    assert (resp.status, resp.reason, resp.body) == (201, "Made", b"x")
    assert "Content-Length" not in resp.headers and resp.headers["X-A"] == "1"
    assert http_response(Response(status_code=404, status="")).reason == "Not Found"
    assert http_response(Response(status_code=200, status="Fine\r\nX: y")).reason == "OK"
    for bad in [Response(status_code=99, status=""), Response(status_code=600, status=""),
                Response(status_code=200, status="", header={"a b": "1"}),
                Response(status_code=200, status="", header={"x": "a\r\nb"})]:
        with pytest.raises(Unsendable):
            http_response(bad)


# ------------------------------------------------------------------ the provider, in process

Script = Callable[[Request], Awaitable[bytes]]


@dataclass
class Served:
    provider: HttpServer
    calls: list[Request]
    script: list[Script]  # [0] answers every call

    def url(self, port: int, path: str = "/") -> str:
        return f"http://127.0.0.1:{port}{path}"


async def _echo(req: Request) -> bytes:
    return serialize(Response(status_code=200, status="OK", body=serialize(req)))


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    calls: list[Request] = []
    script: list[Script] = [_echo]

    async def call_actor(actor_id: str, operation: str, payload: bytes) -> bytes:
        assert operation == OP_HANDLE_REQUEST
        req = deserialize(Request, payload)
        calls.append(req)
        return await script[0](req)

    ctx = ProviderContext(capability_id=HTTP, binding_name="default", vendor_id="http",
                          nc=None, loop=asyncio.get_running_loop(), call_actor=call_actor)
    provider = HttpServer(ctx)
    await provider.start()
    try:
        yield Served(provider, calls, script)
    finally:
        await provider.stop()


async def fetch(method: str, url: str, **kw: object) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kw) as r:
        return r.status, await r.read()


async def raw_http(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def test_each_request_is_a_HandleRequest_and_the_response_goes_back(
        served: Served) -> None:
    port = free_port()
    await served.provider.bind("M1", {"PORT": str(port)})
    assert served.provider.state() == {"bound": "1", "listening": f"127.0.0.1:{port}"}
    status, body = await fetch("POST", served.url(port, "/x?a=1&b=%20"), data=b"payload",
                               headers={"X-Tag": "t"})
    assert status == 200
    sent = deserialize(Request, body)
    assert (sent.method, sent.path, sent.query_string, sent.body) == (
        "POST", "/x", "a=1&b=%20", b"payload")
    assert sent.header["x-tag"] == "t" and sent.header["host"] == f"127.0.0.1:{port}"
    # the target as the client sent it, neither decoded nor normalised (as actix gives it)
    raw = await raw_http(port, b"GET /a%2Fb/../c?q HTTP/1.1\r\nHost: h\r\nConnection: close"
                               b"\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert (served.calls[-1].path, served.calls[-1].query_string) == ("/a%2Fb/../c", "q")


async def test_failures_are_500_with_waSCCs_words_and_logged(
        served: Served, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    await served.provider.bind("M1", {"PORT": str(port)})

    async def fail(req: Request) -> bytes:
        raise RuntimeError("the guest said no")

    async def garbage(req: Request) -> bytes:
        return b"\xc1"

    async def bad_header(req: Request) -> bytes:
        return serialize(Response(status_code=200, status="OK", header={"x": "a\nb"}))

    caplog.set_level(logging.WARNING, "hostagent.providers.http_server")
    for script, words, logged in [(fail, FAILED, "the guest said no"),
                                  (garbage, MALFORMED, "not MessagePack"),
                                  (bad_header, MALFORMED, "control character")]:
        served.script[0] = script
        assert await fetch("GET", served.url(port)) == (500, words.encode() + b"\n")
        assert logged in caplog.text


async def test_bounds_413_503_504_and_aiohttps_400(served: Served) -> None:
    port = free_port()
    await served.provider.bind("M1", {"PORT": str(port), "MAX_BODY": "10",
                                      "MAX_IN_FLIGHT": "1", "TIMEOUT_MS": "300"})
    assert (await fetch("POST", served.url(port), data=b"x" * 11))[0] == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
        for _ in range(3):
            yield b"x" * 5

    assert (await fetch("POST", served.url(port), data=chunks()))[0] == 413
    assert len(served.calls) == 0
    release = asyncio.Event()

    async def blocked(req: Request) -> bytes:
        await release.wait()
        return await _echo(req)

    served.script[0] = blocked
    first = asyncio.create_task(fetch("GET", served.url(port, "/first")))
    await eventually(lambda: served.calls, message="the first request reaches the actor")
    status, body = await fetch("GET", served.url(port, "/second"))
    assert (status, b"MAX_IN_FLIGHT" in body) == (503, True)
    assert (await first)[0] == 504  # the actor never answered within TIMEOUT_MS
    release.set()
    served.script[0] = _echo
    assert (await fetch("GET", served.url(port)))[0] == 200  # the slot was given back
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(200))
    assert (await raw_http(port, b"GET / HTTP/1.1\r\nHost: h\r\n" + many + b"\r\n")
            ).startswith(b"HTTP/1.0 400")


async def test_rebinding_unbinding_and_a_port_in_use(served: Served) -> None:
    port, other = free_port(), free_port()
    provider = served.provider
    await provider.bind("M1", {"PORT": str(port)})
    await provider.bind("M1", {"PORT": str(port), "MAX_BODY": "1"})  # same socket
    assert (await fetch("POST", served.url(port), data=b"xy"))[0] == 413
    with pytest.raises(ProviderError, match=f"cannot listen on 127.0.0.1:{port}: the port "
                                            "is already in use"):
        await provider.bind("M2", {"PORT": str(port)})
    await provider.bind("M1", {"PORT": str(other)})  # moves: the old port is closed
    assert (await fetch("GET", served.url(other)))[0] == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch("GET", served.url(port))
    await provider.bind("M2", {"PORT": str(port)})  # now free
    with pytest.raises(ProviderError, match="already in use"):
        await provider.bind("M2", {"PORT": str(other)})  # refused: M2 keeps its port
    assert (await fetch("GET", served.url(port)))[0] == 200
    await provider.unbind("M1")
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch("GET", served.url(other))
    await provider.stop()
    assert provider.state() == {"bound": "0", "listening": ""}
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch("GET", served.url(port))


# ------------------------------------------------------------------ a real host

LATTICE = "http"


@dataclass
class Lab:
    url: str
    host: HostProcess
    host_id: str
    echo: str  # http_echo.wat's actor id
    slow: str  # the same module under another id, bound with a short TIMEOUT_MS


async def ok(nc: Client, host: HostProcess, host_id: str, op: CommandOp,
             payload: Message) -> None:
    ack = await command(nc, LATTICE, host_id, op, payload, timeout=30)
    assert ack.accepted, f"{op}: {ack.reason}\n{host.log()[-3000:]}"


async def _set_up(url: str, pool: HostPool) -> Lab:
    echo, echo_claims = signed("http_echo", [HTTP])
    slow, slow_claims = signed("http_echo", [HTTP], key="http_slow")
    nc = await connect(url)
    try:
        for wasm in (echo, slow):
            await Gantry(nc, LATTICE).push(wasm)
        host = pool.spawn(labels={}, name="h", runtime="wasm")
        [inv] = await eventually(lambda: ping(nc, LATTICE, expect=1), timeout=30,
                                 message=lambda: f"the host answers\n{host.log()[-2000:]}")
        lab = Lab(url, host, inv.host_id, echo_claims.subject, slow_claims.subject)
        await ok(nc, host, lab.host_id, CommandOp.PROVIDER_START,
                 StartProviderCommand(capability_id=HTTP, vendor_id="http"))
        for aid in (lab.echo, lab.slow):
            await ok(nc, host, lab.host_id, CommandOp.ACTOR_START, StartActorCommand(actor_id=aid))
        return lab
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def lab(module_nats_server: NatsServer,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One nats-server and one wasm host with the provider and both test actors."""
    url = module_nats_server.url
    with HostPool(url, LATTICE, log_dir=tmp_path_factory.mktemp("http")) as pool:
        yield asyncio.run(_set_up(url, pool))


async def bind(lab: Lab, actor: str, **values: str) -> int:
    port = free_port()
    nc = await connect(lab.url)
    try:
        await ok(nc, lab.host, lab.host_id, CommandOp.BINDING_PUT, PutBindingCommand(
            actor_id=actor, capability_id=HTTP, values={"PORT": str(port), **values}))
    finally:
        await nc.close()
    return port


@pytest.mark.e2e
async def test_a_wasm_actor_behind_the_provider_on_a_real_host(lab: Lab) -> None:
    port = await bind(lab, lab.echo)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session, session.get(f"{url}/hello?a=1") as r:
        assert (r.status, r.headers["Content-Type"]) == (200, "application/x-msgpack")
        sent = deserialize(Request, await r.read())
    assert (sent.method, sent.path, sent.query_string, sent.body) == ("GET", "/hello", "a=1",
                                                                      b"")
    assert sent.header["host"] == f"127.0.0.1:{port}"
    for body, expected in [(b"F", (500, FAILED)), (b"M", (500, MALFORMED)),
                           (b"H", (500, MALFORMED))]:
        status, said = await fetch("POST", url, data=body)
        assert (status, said.decode().strip()) == expected
    assert "failed on purpose" in lab.host.log()  # the reason is in the host's log
    slow = await bind(lab, lab.slow, TIMEOUT_MS="50")
    assert (await fetch("POST", f"http://127.0.0.1:{slow}/", data=b"S"))[0] == 504
    assert (await fetch("POST", url, data=b"still here"))[0] == 200


@pytest.mark.e2e
async def test_a_port_in_use_refuses_the_binding_and_unbinding_closes(lab: Lab) -> None:
    port = await bind(lab, lab.echo)
    nc = await connect(lab.url)
    try:
        async with EventRecorder(nc, LATTICE) as bus:
            ack = await command(nc, LATTICE, lab.host_id, CommandOp.BINDING_PUT, PutBindingCommand(
                actor_id=lab.slow, capability_id=HTTP, values={"PORT": str(port)}), timeout=30)
            assert not ack.accepted
            reason = f"cannot listen on 127.0.0.1:{port}: the port is already in use"
            assert ack.reason is not None and reason in ack.reason, ack.reason
            await bus.wait_for(EventType.BINDING_PUT_FAILED, where=lambda d: reason in d[
                "reason"])
        await ok(nc, lab.host, lab.host_id, CommandOp.BINDING_DEL, DeleteBindingCommand(
            actor_id=lab.echo, capability_id=HTTP))
    finally:
        await nc.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch("GET", f"http://127.0.0.1:{port}/")


@pytest.mark.e2e
@pytest.mark.skipif(not WASCC_ECHO.is_file(), reason=NO_FIXTURE)
async def test_wasccs_own_echo_actor_answers_curl(lab: Lab) -> None:
    """The real module built and signed by waSCC's tooling in 2020, unchanged."""
    nc = await connect(lab.url)
    try:
        await Gantry(nc, LATTICE).push(WASCC_ECHO.read_bytes())
        await ok(nc, lab.host, lab.host_id, CommandOp.ACTOR_START,
                 StartActorCommand(actor_id=WASCC_ECHO_ID))
    finally:
        await nc.close()
    port = await bind(lab, WASCC_ECHO_ID)
    status, body = await fetch("GET", f"http://127.0.0.1:{port}/hello?a=1")
    assert status == 200, body
    echoed = json.loads(body)  # serde_json of its own Request type, snake_case
    assert (echoed["method"], echoed["path"], echoed["query_string"]) == ("GET", "/hello",
                                                                          "a=1")
    assert echoed["headers"]["host"] == f"127.0.0.1:{port}" and echoed["body"] == []
