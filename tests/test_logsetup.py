"""``--log-format`` and ``--metrics-addr`` parsing (lattice.logsetup, lattice.metricserver):
text stays the default line people read; json lines carry only the context fields a record
has; a bad address is a usage error naming the expected shape."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import click
import pytest

from hostagent.logctx import host_logger
from lattice.logsetup import (
    add_context,
    bind,
    context_fields,
    log_context,
    new_trace,
    setup_logging,
)
from lattice.metricserver import ADDRESS


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    logging.basicConfig(force=True, handlers=[logging.NullHandler()])


def test_text_is_the_default_format(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info")
    logging.getLogger("vinculum.test").info("revision %s applied", "abc12345")
    [line] = capsys.readouterr().err.splitlines()
    assert line.endswith(" INFO vinculum.test: revision abc12345 applied")


def test_json_lines_carry_host_revision_and_extra_fields(
        capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "json")
    revision = ["c0ffee"]
    forget = add_context(lambda: {"revision": revision[0]})
    host_logger("hostagent.host", "NABCDEFGHIJKLMNOP", "pi").info("joined lattice %s", "x")
    logging.getLogger("reconciler.x").warning("moved", extra={"entity": "MACTOR",
                                                              "secret": "not shown"})
    forget()
    logging.getLogger("reconciler.x").info("after")
    first, second, third = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert "revision" not in third
    assert first["message"] == "host=pi/NABCDEFGHI joined lattice x"
    assert (first["host"], first["host_id"], first["revision"]) == (
        "pi", "NABCDEFGHIJKLMNOP", "c0ffee")
    assert first["level"] == "INFO" and first["logger"] == "hostagent.host" and first["time"]
    assert second == {"time": second["time"], "level": "WARNING", "logger": "reconciler.x",
                      "message": "moved", "entity": "MACTOR", "revision": "c0ffee"}


@pytest.mark.parametrize(("given", "parsed"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), (":9090", ("0.0.0.0", 9090)),
    ("[::1]:0", ("::1", 0)), ("localhost:65535", ("localhost", 65535)),
])
def test_metrics_address(given: str, parsed: tuple[str, int]) -> None:
    assert ADDRESS.convert(given, None, None) == parsed


@pytest.mark.parametrize("bad", ["9464", "host:", "host:http", "host:70000"])
def test_metrics_address_refused(bad: str) -> None:
    with pytest.raises(click.BadParameter, match="is not HOST:PORT"):
        ADDRESS.convert(bad, None, None)


def test_log_context_reaches_every_call_below_it_and_its_tasks(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Fields set where the work begins are on every record logged under it, in any
    module and in the asyncio tasks started there; an extra of the call wins; the block's
    end restores the fields before it; a task's bind stays in that task."""
    import asyncio

    setup_logging("info", "json")
    forget = add_context(lambda: {"revision": "in-force"})
    log = logging.getLogger("gitsync.somewhere")

    async def child() -> None:
        log.info("in a task")
        bind(trace="task-own")
        log.info("bound in the task")

    async def work() -> None:
        with log_context(entity="Deployment/echo", revision="abc123", trace="t1"):
            log.info("outer")
            with log_context(entity="MACTOR"):
                logging.getLogger("hostagent.wasm").info("inner")
            log.info("called with an extra", extra={"revision": "given"})
            await asyncio.create_task(child())
            log.info("after the task")
        log.info("outside")

    try:
        asyncio.run(work())
    finally:
        forget()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    fields = [{k: d.get(k) for k in ("entity", "revision", "trace")} for d in lines]
    assert [d["message"] for d in lines] == ["outer", "inner", "called with an extra",
                                             "in a task", "bound in the task",
                                             "after the task", "outside"]
    assert fields == [
        {"entity": "Deployment/echo", "revision": "abc123", "trace": "t1"},
        {"entity": "MACTOR", "revision": "abc123", "trace": "t1"},
        {"entity": "Deployment/echo", "revision": "given", "trace": "t1"},
        {"entity": "Deployment/echo", "revision": "abc123", "trace": "t1"},
        {"entity": "Deployment/echo", "revision": "abc123", "trace": "task-own"},
        {"entity": "Deployment/echo", "revision": "abc123", "trace": "t1"},
        {"entity": None, "revision": "in-force", "trace": None},
    ]
    assert context_fields() == {}


def test_log_context_refuses_unknown_fields_and_traces_are_fresh() -> None:
    with pytest.raises(TypeError, match="unknown field"), log_context(deployment="x"):
        pass
    with pytest.raises(TypeError, match="unknown field"):
        bind(commit="x")
    with log_context(host="pi", revision=None):
        assert context_fields() == {"host": "pi"}
    first, second = new_trace(), new_trace()
    assert first != second and len(first) == 16 and int(first, 16) >= 0


def test_a_host_logger_names_its_host_over_the_context(
        capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "json")
    with log_context(host="context-host", entity="MACTOR"):
        host_logger("hostagent.host", "NABCDEFGHIJKLMNOP", "pi").info("started")
    [line] = (json.loads(x) for x in capsys.readouterr().err.splitlines())
    assert (line["host"], line["host_id"], line["entity"]) == ("pi", "NABCDEFGHIJKLMNOP",
                                                               "MACTOR")


def test_a_webhook_delivery_is_the_trace_and_a_push_names_its_revision() -> None:
    """reconciler.webhook: a forge's delivery id becomes the trace of the request's log
    lines, a push's ``after`` the revision of its 'fetching now' line."""
    from reconciler.webhook import Forge, delivery_of, judge

    assert delivery_of({"X-GitHub-Delivery": "72d3162e-cc78-11e3"}) == "72d3162e-cc78-11e3"
    assert delivery_of({"X-Gitea-Delivery": "9"}) == "9"
    assert delivery_of({}) is None
    push = json.dumps({"ref": "refs/heads/main", "after": "c0ffee" * 6}).encode()
    assert judge(Forge.GITHUB, "push", push, "main").revision == "c0ffee" * 6
    other = json.dumps({"ref": "refs/heads/dev", "after": "c0ffee"}).encode()
    assert judge(Forge.GITHUB, "push", other, "main").revision is None


def test_a_call_into_an_actor_logs_under_its_id_on_the_instance_thread(
        capsys: pytest.CaptureFixture[str]) -> None:
    """hostagent: timed_call names the actor called; an instance's thread runs in the
    caller's context, so what the actor (or a provider it calls) logs there carries the
    host and the actor too."""
    import asyncio
    from types import SimpleNamespace

    from hostagent.metrics import timed_call
    from hostagent.wasm.runtime import ActorWorker

    setup_logging("info", "json")
    worker = ActorWorker(SimpleNamespace(actor_id="MECHO", instance_id="i1"),  # type: ignore[arg-type]
                         None)  # type: ignore[arg-type]

    async def call() -> None:
        bind(host="pi", host_id="NPI")
        await worker.run(lambda: logging.getLogger("hostagent.wasm.wapc").info("console"))
        await timed_call("MECHO", worker.run(
            lambda: logging.getLogger("hostagent.wasm.wapc").info("in the call")))

    try:
        asyncio.run(call())
    finally:
        worker.close()
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [(d["message"], d["host"], d.get("entity")) for d in lines] == [
        ("console", "pi", None), ("in the call", "pi", "MECHO")]


def test_a_command_is_about_its_actor_or_its_provider() -> None:
    from types import SimpleNamespace

    from hostagent.logctx import command_entity

    assert command_entity(SimpleNamespace(actor_id="MECHO", capability_id="wascc:http_server",
                                          binding_name="default")) == "MECHO"
    assert command_entity(SimpleNamespace(capability_id="wascc:keyvalue",
                                          binding_name="default")) == "wascc:keyvalue/default"
    assert command_entity(SimpleNamespace()) is None
