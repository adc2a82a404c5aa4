"""How the agent and the hosts log: text for people (the default), or one JSON object a line.

``--log-format json`` on ``vinculum`` and ``lattice-host`` calls :func:`setup_logging` with
``json``: every line is an object with ``time``, ``level``, ``logger`` and ``message``,
plus the context fields :data:`FIELDS` (``entity``, ``host``, ``host_id``, ``revision``,
``trace``) wherever the record carries them: a host's lines carry its name and id
(:mod:`hostagent.logctx` passes them as the record's extras), the agent's carry the
revision in force (a context added with :func:`add_context`), and a log call may pass any
of them with ``extra=``. Lines are formatted by python-json-logger.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

from pythonjsonlogger.json import JsonFormatter

#: the formats ``--log-format`` accepts
LOG_FORMATS = ("text", "json")
#: context fields a JSON line carries when its record has them
FIELDS = ("entity", "host", "host_id", "revision", "trace")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: callables whose fields every record gets (a field the record already has wins)
_contexts: list[Callable[[], Mapping[str, object]]] = []


class _ContextFilter(logging.Filter):
    """Adds the registered contexts' fields, and ``host``/``host_id`` from the host
    logger's extras (``host_name``, ``host_short``), to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for ctx in _contexts:
            for key, value in ctx().items():
                if value is not None and not hasattr(record, key):
                    setattr(record, key, value)
        name = getattr(record, "host_name", None)
        if name is not None and not hasattr(record, "host"):
            record.host = name
            record.host_id = getattr(record, "host_short", None)
        return True


class _Json(JsonFormatter):
    """Only the context fields the record has, never the rest of its extras."""

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        for key in list(log_data):
            if key not in ("time", "level", "logger", "message", "exc_info", *FIELDS):
                del log_data[key]


def add_context(fields: Callable[[], Mapping[str, object]]) -> Callable[[], None]:
    """Give every record from now on the fields ``fields()`` returns (None: left out);
    returns what removes it again."""
    _contexts.append(fields)
    return lambda: _contexts.remove(fields)


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
