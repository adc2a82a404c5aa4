"""Finding provider classes: the ``vinculum.providers`` entry-point group.

Each entry point names a class with ``capability_id`` and ``vendor_id`` attributes; the
pair is its key. The built-in providers are registered in pyproject.toml and also known
directly, so a source checkout that was not reinstalled still has them. An entry point
that fails to load is logged and skipped.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

from hostagent.providers.extras_default import Extras
from hostagent.providers.keyvalue_memory import MemoryKeyValue
from hostagent.providers.ledcontroller import LedController
from hostagent.providers.logging_default import HostLog
from hostagent.providers.messaging_nats import NatsMessaging

log = logging.getLogger(__name__)

GROUP = "vinculum.providers"
BUILTINS: tuple[Any, ...] = (NatsMessaging, MemoryKeyValue, HostLog, Extras, LedController)
ProviderKey = tuple[str, str]  # (capability_id, vendor_id)


def discover() -> dict[ProviderKey, Any]:
    """Provider classes by (capability_id, vendor_id): built-ins, then entry points."""
    found: dict[ProviderKey, Any] = {(c.capability_id, c.vendor_id): c for c in BUILTINS}
    for ep in entry_points(group=GROUP):
        try:
            cls = ep.load()
            key = (str(cls.capability_id), str(cls.vendor_id))
        except Exception as exc:
            log.warning("provider entry point %s (%s) does not load: %s", ep.name, ep.value,
                        exc)
            continue
        found[key] = cls
    return found
