"""Encoding and decoding of wire messages: a message that does not parse is logged with
its subject and dropped, never raised (re-exported by :mod:`lattice.protocol`)."""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lattice.protocol.models import PROTOCOL_VERSION

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def encode(msg: BaseModel) -> bytes:
    """Serialise a message to JSON bytes."""
    return msg.model_dump_json().encode()


def decode(model: type[M], payload: bytes, *, subject: str = "?") -> M | None:
    """Parse ``payload`` as ``model``; on failure log the subject and the problem and
    return None (callers drop the message: a bad message never crashes a process).

    A message of another protocol version (``v``; a CloudEvent's ``protocolversion``) is
    dropped the same way: its fields may mean something else there."""
    try:
        msg = model.model_validate_json(payload)
    except ValidationError as exc:
        log.warning(
            "dropping unparseable %s on %s: %s",
            model.__name__, subject, describe_validation_error(exc),
        )
        return None
    version = getattr(msg, "v", getattr(msg, "protocolversion", PROTOCOL_VERSION))
    if version != PROTOCOL_VERSION:
        log.warning("dropping %s on %s: protocol version %r, this side speaks %d",
                    model.__name__, subject, version, PROTOCOL_VERSION)
        return None
    return msg


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field and what is wrong with it."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(message)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def parse_json_object(payload: bytes) -> dict[str, Any] | str:
    """Decode a JSON object, or return a message saying why it is not one."""
    try:
        obj = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return f"malformed JSON: {exc}"
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    return obj
