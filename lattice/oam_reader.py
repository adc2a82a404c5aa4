"""Reading untyped YAML data with refusals instead of exceptions, for :mod:`lattice.oam`.

Pure. :class:`Reader` checks a constructed document piece by piece (a mapping with known
keys, a list, text, a map of labels), collecting every :class:`Refusal` (field path and
reason) rather than stopping at the first, so one ``latticectl convert`` run names every
problem of an Application. :class:`Native` is a native document being built, with the OAM
field each of its fields came from, so that errors of the native models are reported at
the lines of the OAM source.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class Refusal:
    """Something in the Application with no native equivalent: where, and why."""

    loc: Loc
    message: str


@dataclass
class Native:
    """One native document being built, and where each of its fields came from: native
    field path → (OAM field path, whether the paths below it have the same shape)."""

    kind: str
    data: dict[str, Any]
    origin: dict[Loc, tuple[Loc, bool]] = field(default_factory=dict)

    def source_of(self, loc: Loc) -> Loc:
        """The OAM field a native field path came from (its longest known prefix)."""
        for n in range(len(loc), -1, -1):
            found = self.origin.get(loc[:n])
            if found is not None:
                oam, same_shape = found
                return (*oam, *loc[n:]) if same_shape else oam
        return ()


class Reader:
    """Reads the Application, collecting refusals instead of stopping at the first."""

    def __init__(self) -> None:
        self.refusals: list[Refusal] = []

    def refuse(self, loc: Loc, message: str) -> None:
        self.refusals.append(Refusal(loc, message))

    def mapping(self, value: Any, loc: Loc, known: Sequence[str], *,
                what: str = "") -> dict[str, Any] | None:
        """``value`` as a mapping whose keys are all ``known``; None (refused) if not."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.refuse(loc, f"expected a mapping, got {type(value).__name__}")
            return None
        for key in value:
            if key not in known:
                close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.refuse((*loc, str(key)),
                            f"unknown field {key!r}{hint}{what}; known fields: "
                            f"{', '.join(known)}")
        return value

    def items(self, value: Any, loc: Loc) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.refuse(loc, f"expected a list, got {type(value).__name__}")
            return []
        return value

    def text(self, value: Any, loc: Loc, *, required: str = "") -> str | None:
        if value is None:
            if required:
                self.refuse(loc, required)
            return None
        if not isinstance(value, str):
            self.refuse(loc, f"expected text, got {type(value).__name__}")
            return None
        return value

    def labels(self, value: Any, loc: Loc) -> dict[str, str]:
        """A map of scalars as text (``true`` → ``"true"``, as YAML users mean it)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.refuse(loc, f"expected a mapping, got {type(value).__name__}")
            return {}
        out: dict[str, str] = {}
        for key, item in value.items():
            if isinstance(item, bool):
                out[str(key)] = str(item).lower()
            elif isinstance(item, str | int | float):
                out[str(key)] = str(item)
            else:
                self.refuse((*loc, str(key)), f"expected text, got {type(item).__name__}")
        return out


__all__ = ["Loc", "Native", "Reader", "Refusal"]
