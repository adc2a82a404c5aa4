"""Label selectors for affinity rules.

Pure functions, no I/O. A rule is one of ``key=value``, ``key!=value``, ``key`` (the label
exists) or ``!key`` (the label is absent). Hosts use :func:`unmet` to decide whether to bid
and to explain a decline; the planner and the manifest validation use :func:`parse`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from lattice.errors import SelectorError

# Label keys follow the Kubernetes shape loosely: letters, digits, '.', '_', '-', '/'.
_KEY = r"[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?"
_VALUE = r"[A-Za-z0-9._:/-]*"
_RULE = re.compile(
    rf"^\s*(?P<neg>!)?\s*(?P<key>{_KEY})\s*(?:(?P<op>!=|==|=)\s*(?P<value>{_VALUE}))?\s*$"
)


class Op(StrEnum):
    """How a selector compares a host's label."""

    EQUALS = "="
    NOT_EQUALS = "!="
    EXISTS = "exists"
    ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class Selector:
    """One parsed affinity rule."""

    key: str
    op: Op
    value: str | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy this rule."""
        match self.op:
            case Op.EQUALS:
                return labels.get(self.key) == self.value
            case Op.NOT_EQUALS:
                return labels.get(self.key) != self.value
            case Op.EXISTS:
                return self.key in labels
            case Op.ABSENT:
                return self.key not in labels

    def explain(self, labels: Mapping[str, str]) -> str:
        """Why ``labels`` fail this rule, in words (only meaningful when they do)."""
        match self.op:
            case Op.EQUALS:
                if self.key not in labels:
                    return f"label {self.key} missing"
                return f"label {self.key}={labels[self.key]}, wants {self.value}"
            case Op.NOT_EQUALS:
                return f"label {self.key}={self.value}, wants anything else"
            case Op.EXISTS:
                return f"label {self.key} missing"
            case Op.ABSENT:
                return f"label {self.key} present, wants it absent"

    def __str__(self) -> str:
        match self.op:
            case Op.EQUALS:
                return f"{self.key}={self.value}"
            case Op.NOT_EQUALS:
                return f"{self.key}!={self.value}"
            case Op.EXISTS:
                return self.key
            case Op.ABSENT:
                return f"!{self.key}"


def parse(rule: str) -> Selector:
    """Parse one affinity rule; raise :class:`SelectorError` naming the rule if it is bad.

    >>> parse("leds=12")
    Selector(key='leds', op=<Op.EQUALS: '='>, value='12')
    >>> str(parse("!gpu"))
    '!gpu'
    """
    if not isinstance(rule, str):
        raise SelectorError(repr(rule), "a rule must be a string")
    m = _RULE.match(rule)
    if m is None:
        raise SelectorError(
            rule, "expected key=value, key!=value, key (exists) or !key (absent)"
        )
    key, neg, op, value = m["key"], m["neg"], m["op"], m["value"]
    if neg and op:
        raise SelectorError(rule, "'!' negates a bare key only; use key!=value")
    if op in ("=", "=="):
        return Selector(key, Op.EQUALS, value)
    if op == "!=":
        return Selector(key, Op.NOT_EQUALS, value)
    return Selector(key, Op.ABSENT if neg else Op.EXISTS)


def parse_all(rules: Iterable[str]) -> tuple[Selector, ...]:
    """Parse every rule, raising on the first bad one."""
    return tuple(parse(r) for r in rules)


def unmet(rules: Iterable[str | Selector], labels: Mapping[str, str]) -> list[str]:
    """The reasons ``labels`` fail ``rules`` (empty when every rule is satisfied)."""
    reasons = []
    for rule in rules:
        sel = rule if isinstance(rule, Selector) else parse(rule)
        if not sel.matches(labels):
            reasons.append(sel.explain(labels))
    return reasons


def satisfied(rules: Iterable[str | Selector], labels: Mapping[str, str]) -> bool:
    """True when ``labels`` satisfy every rule."""
    return not unmet(rules, labels)
