"""``-l/--selector``: kubectl's label selectors, over our own selector language.

A selector is requirements separated by commas, all of which must hold (kubectl's
syntax): the equality forms of :mod:`lattice.selectors`, the language of affinity rules
(``key=value``, ``key==value``, ``key!=value``, ``key``, ``!key``), parsed by it; and
kubectl's set-based forms, which it does not have, parsed here: ``key in (a,b)`` (the
label is one of the values) and ``key notin (a,b)`` (it is absent or none of them).

Pure. :class:`SelectorParam` is the click type of the option (a bad selector is a usage
error, exit 2); :mod:`cli.listing` filters resources with :meth:`LabelQuery.matches`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from lattice import selectors
from lattice.errors import SelectorError

_SET = re.compile(r"^\s*(?P<key>[A-Za-z0-9][A-Za-z0-9._/-]*)\s+(?P<op>in|notin)\s*"
                  r"\((?P<values>[^()]*)\)\s*$")


@dataclass(frozen=True)
class SetRequirement:
    """``key in (values)`` or ``key notin (values)``."""

    key: str
    values: frozenset[str]
    negated: bool

    def matches(self, labels: Mapping[str, str]) -> bool:
        inside = self.key in labels and labels[self.key] in self.values
        return not inside if self.negated else inside

    def __str__(self) -> str:
        op = "notin" if self.negated else "in"
        return f"{self.key} {op} ({','.join(sorted(self.values))})"


Requirement = selectors.Selector | SetRequirement


@dataclass(frozen=True)
class LabelQuery:
    """Every requirement of one ``-l`` selector (all must hold)."""

    source: str
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy every requirement. Pure.

        >>> parse_selector("app=web,tier in (edge,core)").matches({"app": "web", "tier": "edge"})
        True
        """
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def split_top(text: str) -> list[str]:
    """``text`` cut at the commas outside parentheses. Pure."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_selector(text: str) -> LabelQuery:
    """Parse a kubectl label selector; :class:`~lattice.errors.SelectorError` names the
    requirement that is wrong."""
    reqs: list[Requirement] = []
    for part in split_top(text):
        if not part.strip():
            raise SelectorError(text, "an empty requirement (two commas, or a trailing one)")
        m = _SET.match(part)
        if m is not None:
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            if not values:
                raise SelectorError(part.strip(), f"'{m['op']}' wants at least one value")
            reqs.append(SetRequirement(m["key"], values, m["op"] == "notin"))
        elif re.search(r"\s(in|notin)\b", part):
            raise SelectorError(part.strip(), "write key in (a,b) or key notin (a,b)")
        else:
            reqs.append(selectors.parse(part))
    return LabelQuery(text, tuple(reqs))


if TYPE_CHECKING:
    _QueryParam = click.ParamType[LabelQuery]
else:  # click < 8.2 has no generic ParamType
    _QueryParam = click.ParamType


class SelectorParam(_QueryParam):
    """The ``-l/--selector`` option's type: a :class:`LabelQuery`."""

    name = "selector"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> LabelQuery:
        if isinstance(value, LabelQuery):
            return value
        try:
            return parse_selector(str(value))
        except SelectorError as exc:
            self.fail(f"invalid requirement {exc.rule!r} in {value!r}: {exc.why} (e.g. "
                      "app=web,tier!=test or 'tier in (edge,core)')", param, ctx)
