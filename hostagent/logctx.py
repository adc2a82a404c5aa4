"""Log lines with context: every line a host writes names the host (and the entity).

:func:`host_logger` wraps a module logger so its messages start with ``host=<name>/<id>``
(and, with ``--log-format json``, its records carry ``host`` and the full ``host_id``);
:mod:`hostagent.commands` and :mod:`hostagent.host` log through it. Every other line of a
host process carries them too: :func:`hostagent.main.run_host` binds them to its context
(:func:`lattice.logsetup.bind`). Binding values that a
host resolved from its environment never go into a log line: only templates do.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any


class HostLogAdapter(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every message with the host's name and short id."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}  # --log-format json: fields
        return f"host={extra.get('host_name')}/{extra.get('host_short')} {msg}", kwargs


def host_logger(name: str, host_id: str, host_name: str) -> HostLogAdapter:
    """A logger for module ``name`` that names this host on every line."""
    return HostLogAdapter(logging.getLogger(name), {
        "host_name": host_name, "host_short": host_id[:10], "host_full_id": host_id})


def command_entity(cmd: object) -> str | None:
    """What a control command is about, as its log lines name it (``entity``): the actor
    of an actor or binding command, ``capability/binding`` of a provider's. Pure."""
    actor = getattr(cmd, "actor_id", None)
    if isinstance(actor, str) and actor:
        return actor
    cap, name = getattr(cmd, "capability_id", None), getattr(cmd, "binding_name", None)
    return f"{cap}/{name}" if isinstance(cap, str) and cap else None
