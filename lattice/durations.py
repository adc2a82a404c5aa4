"""Durations as operators write them: ``250ms``, ``30s``, ``2m``, ``1h``, ``1d``, or plain
seconds (``1.5``). Pure; used by the command lines of the agent and the host.

>>> parse_duration("1m30s")
90.0
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``; raises ValueError naming the text when it is not a duration
    or is negative."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        raw = text.strip().lower()
        try:
            value = float(raw)
        except ValueError:
            pos, value = 0, 0.0
            for m in _PART.finditer(raw):
                if m.start() != pos:
                    break
                value += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            if pos != len(raw) or not raw:
                raise ValueError(f"{text!r} is not a duration: use e.g. 250ms, 30s, 2m, 1h "
                                 "or a number of seconds") from None
    if value < 0 or value != value:
        raise ValueError(f"{text!r} is not a duration: it must be zero or more")
    return value
