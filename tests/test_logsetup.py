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
from lattice.logsetup import add_context, setup_logging
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
    assert (first["host"], first["host_id"], first["revision"]) == ("pi", "NABCDEFGHI",
                                                                    "c0ffee")
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
