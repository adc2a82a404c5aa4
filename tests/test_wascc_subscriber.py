"""waSCC's own ``subscriber.wasm`` behind vinculum's ``wascc:messaging`` (issue 13).

The module was built and signed by waSCC's tooling in 2020 (``../shared/fixtures/wascc/``,
kept outside the project; the tests skip, saying why, where it is absent). It is pushed
to gantry unchanged, started on a real ``lattice-host --runtime wasm`` process, and bound
to ``wascc:messaging`` / ``nats`` with a ``SUBSCRIPTION``, as the agent would do it. A
message published to that subject reaches it as waSCC's ``DeliverMessage {subject,
replyTo, body}``, which it decodes with its own codec and prints (``__console_log``) into
the host's log; the ``HealthRequest`` waSCC's host could send it is answered ``()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client

from hostagent.wascc_codec import serialize
from hostagent.wascc_codec.core import HEALTHY, OP_HEALTH_REQUEST, HealthRequest
from hostagent.wasm.rpc import ERROR_HEADER, OP_HEADER
from lattice.gantry import Gantry
from lattice.localnats import NatsServer
from lattice.natsutil import connect
from lattice.protocol import (
    CommandOp,
    Message,
    PutBindingCommand,
    StartActorCommand,
    StartProviderCommand,
    Subjects,
)
from tests.helpers import eventually
from tests.hostproc import HostPool, HostProcess, command, ping

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120),
              pytest.mark.asyncio(loop_scope="module")]

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "wascc"
SUBSCRIBER = FIXTURES / "subscriber.wasm"
SUBSCRIBER_ID = "MBHRSJORBXAPRCALK6EKOBBCNAPMRTM6ODLXNLOV5TKPDMPXMTCMR4DW"
LATTICE = "wascc"
SUBJECT = "demo.subscriber"

if not SUBSCRIBER.is_file():
    pytest.skip(f"waSCC's subscriber.wasm is not at {SUBSCRIBER} (test data kept outside "
                "the project)", allow_module_level=True)


@dataclass
class Lab:
    nc: Client
    host: HostProcess
    host_id: str


async def ok(lab: Lab, op: CommandOp, payload: Message) -> None:
    ack = await command(lab.nc, LATTICE, lab.host_id, op, payload, timeout=30)
    assert ack.accepted, f"{op}: {ack.reason}\n{lab.host.log()[-3000:]}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(module_nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[Lab]:
    """The subscriber pushed, started on one wasm host and bound to messaging."""
    nc = await connect(module_nats_server.url)
    try:
        await Gantry(nc, LATTICE).push(SUBSCRIBER.read_bytes())
        hosts = tmp_path_factory.mktemp("hosts")
        with HostPool(module_nats_server.url, LATTICE, log_dir=hosts) as pool:
            host = pool.spawn(labels={}, name="h", runtime="wasm")
            [inv] = await eventually(lambda: ping(nc, LATTICE, expect=1), timeout=30,
                                     message=lambda: f"the host answers\n{host.log()[-2000:]}")
            lab = Lab(nc, host, inv.host_id)
            await ok(lab, CommandOp.PROVIDER_START,
                     StartProviderCommand(capability_id="wascc:messaging", vendor_id="nats"))
            await ok(lab, CommandOp.ACTOR_START, StartActorCommand(actor_id=SUBSCRIBER_ID))
            await ok(lab, CommandOp.BINDING_PUT, PutBindingCommand(
                actor_id=SUBSCRIBER_ID, capability_id="wascc:messaging",
                values={"SUBSCRIPTION": SUBJECT}))
            yield lab
    finally:
        await nc.close()


async def test_a_published_message_reaches_wasccs_subscriber(lab: Lab) -> None:
    await lab.nc.publish(SUBJECT, b"hello waSCC")
    body = ", ".join(str(b) for b in b"hello waSCC")
    printed = ('Received message broker message: BrokerMessage { subject: "demo.subscriber", '
               f'reply_to: "", body: [{body}] }}')
    await eventually(lambda: printed in lab.host.log(), timeout=20,
                     message=lambda: "the subscriber's line in the host's log\n"
                     f"{lab.host.log()[-3000:]}")
    assert "Failed to de-serialize" not in lab.host.log()


async def test_a_request_is_delivered_with_its_reply_subject(lab: Lab) -> None:
    """The subscriber does not answer (it only prints): the provider makes nothing up,
    and the message it printed carries the requester's inbox as ``reply_to``."""
    reply_to = "demo.replies"
    replies = await lab.nc.subscribe(reply_to)
    await lab.nc.publish(SUBJECT, b"ask", reply=reply_to)
    printed = f'subject: "{SUBJECT}", reply_to: "{reply_to}", body: [97, 115, 107]'
    await eventually(lambda: printed in lab.host.log(), timeout=20,
                     message=lambda: f"the request printed\n{lab.host.log()[-3000:]}")
    await lab.nc.flush()
    assert replies.pending_msgs == 0
    await replies.unsubscribe()


async def test_the_health_request_is_answered_with_the_unit(lab: Lab) -> None:
    reply = await lab.nc.request(
        Subjects(LATTICE).actor_rpc(SUBSCRIBER_ID),
        serialize(HealthRequest(placeholder=False)), timeout=10,
        headers={OP_HEADER: OP_HEALTH_REQUEST})
    assert (reply.headers or {}).get(ERROR_HEADER) is None, reply.headers
    assert reply.data == HEALTHY
    # an operation it does not handle is its own error, and it keeps running
    other = await lab.nc.request(Subjects(LATTICE).actor_rpc(SUBSCRIBER_ID), b"",
                                 timeout=10, headers={OP_HEADER: "HandleMessage"})
    assert "bad dispatch" in (other.headers or {}).get(ERROR_HEADER, "")
    await lab.nc.publish(SUBJECT, b"after")
    await eventually(lambda: "body: [97, 102, 116, 101, 114]" in lab.host.log(), timeout=20,
                     message="still delivering")
