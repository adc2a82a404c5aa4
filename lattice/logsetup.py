"""How the agent and the hosts log: text for people (the default), or one JSON object a line.

``--log-format json`` on ``vinculum`` and ``lattice-host`` calls :func:`setup_logging` with
``json``: every line is an object with ``time``, ``level``, ``logger`` and ``message``,
plus the context fields :data:`FIELDS` (``entity``, ``host``, ``host_id``, ``revision``,
``trace``) wherever the record carries them. A record gets them, first found first:

* from the log call (``extra={"entity": ...}``), or a host's logger
  (:mod:`hostagent.logctx` passes ``host_name``/``host_short``);
* from the context of the code that logs (:func:`log_context`, contextvars): set where the
  work for an entity, a revision or a trace begins, it reaches every log call below it,
  in every module, and in the asyncio tasks started inside it, with no call passing it;
* from a process-wide context (:func:`add_context`: the agent's revision in force, a
  host's name and id).

Lines are formatted by python-json-logger; text lines stay as they were.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

#: the formats ``--log-format`` accepts
LOG_FORMATS = ("text", "json")
#: context fields a JSON line carries when its record has them
FIELDS = ("entity", "host", "host_id", "revision", "trace")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: callables whose fields every record gets (a field the record already has wins)
_contexts: list[Callable[[], Mapping[str, object]]] = []
#: the context fields of the code running now (:func:`log_context`)
_current: dict[str, ContextVar[str | None]] = {
    key: ContextVar(f"vinculum_log_{key}", default=None) for key in FIELDS}


class _ContextFilter(logging.Filter):
    """Adds the context fields to each record: ``host``/``host_id`` from the host logger's
    extras (``host_name``, ``host_full_id`` or ``host_short``), then those of
    :func:`log_context`, then those of the registered contexts; a field the record has
    already is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = getattr(record, "host_name", None)
        if name is not None and not hasattr(record, "host"):
            record.host = name
            record.host_id = (getattr(record, "host_full_id", None)
                              or getattr(record, "host_short", None))
        for key, var in _current.items():
            found = var.get()
            if found is not None and not hasattr(record, key):
                setattr(record, key, found)
        for ctx in _contexts:
            for key, value in ctx().items():
                if value is not None and not hasattr(record, key):
                    setattr(record, key, value)
        return True


class _Json(JsonFormatter):
    """Only the context fields the record has, never the rest of its extras."""

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        for key in list(log_data):
            if key not in ("time", "level", "logger", "message", "exc_info", *FIELDS) or (
                    key in FIELDS and log_data[key] is None):
                del log_data[key]


def add_context(fields: Callable[[], Mapping[str, object]]) -> Callable[[], None]:
    """Give every record from now on the fields ``fields()`` returns (None: left out);
    returns what removes it again."""
    _contexts.append(fields)
    return lambda: _contexts.remove(fields)


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Within the block -- and in the asyncio tasks started inside it, which copy the
    context -- every record carries ``fields`` (names of :data:`FIELDS`; None leaves a
    field as it was). Blocks nest: the inner value wins, the outer one is back after."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"log_context: unknown field(s) {sorted(unknown)}; known: {FIELDS}")
    tokens = [(_current[key], _current[key].set(value))
              for key, value in fields.items() if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind(**fields: str | None) -> None:
    """Set context fields for the rest of the current context (a task's own, or the
    thread's): for code that runs as its own task and has no block to wrap."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"bind: unknown field(s) {sorted(unknown)}; known: {FIELDS}")
    for key, value in fields.items():
        _current[key].set(value)


def context_fields() -> dict[str, str]:
    """The context fields in force here (:func:`log_context`, :func:`bind`), e.g. to pass
    a trace on in a message header."""
    return {key: value for key, var in _current.items() if (value := var.get()) is not None}


#: the NATS header a command carries its sender's trace in (the agent's executor sends it,
#: the host's command handler logs under it)
TRACE_HEADER = "Vinculum-Trace"


def trace_headers() -> dict[str, str] | None:
    """Headers carrying the trace in force (:data:`TRACE_HEADER`), or None without one."""
    trace = _current["trace"].get()
    return {TRACE_HEADER: trace} if trace else None


def new_trace() -> str:
    """A fresh trace id: 16 hex digits, enough to tell one unit of work from another."""
    return secrets.token_hex(8)


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level`` in ``fmt`` (:data:`LOG_FORMATS`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(_Json(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
