"""Durations as operators write them: ``250ms``, ``30s``, ``2m``, ``1h``, ``1d``, or plain
seconds (``1.5``). :func:`parse_duration` is pure; :class:`Duration` is the click
parameter type every duration option of ``latticectl``, ``vinculum`` and
``lattice-host`` uses, so they all read ``2s`` the same way.

>>> parse_duration("1m30s")
90.0
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

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


if TYPE_CHECKING:
    _FloatParam = click.ParamType[float]
else:  # click < 8.2 has no generic ParamType
    _FloatParam = click.ParamType


class Duration(_FloatParam):
    """A duration option, read one way by all three programs (``latticectl``,
    ``vinculum``, ``lattice-host``): ``250ms``, ``30s``, ``2m``, ``1h``, ``1d`` or a
    number of seconds, converted to float seconds; ``minimum`` refuses less (in seconds).
    """

    name = "duration"

    def __init__(self, *, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            seconds = parse_duration(value if isinstance(value, int | float) else str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds < self.minimum:
            self.fail(f"{value!r} is too short: at least {self.minimum:g}s", param, ctx)
        return seconds


#: the common case: any duration of zero or more
DURATION = Duration()
