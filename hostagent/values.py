"""Binding values: templates on the wire, resolved from the host's environment here only.

Pure functions. A value may hold ``${VAR}`` (the variable must be set) or
``${VAR:default}``; ``$${`` is a literal ``${``. The host keeps and reports the templates;
only the :class:`~hostagent.workload.Runtime` receives resolved values, and
:func:`redact` scrubs them from any text a runtime error might carry before it reaches an
ack, an event or a log line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_REF = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


class UnresolvedError(ValueError):
    """Variables a template needs that the environment does not set (names only)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(
            "unset environment variable" + ("s " if len(names) > 1 else " ") + ", ".join(names)
        )


@dataclass(frozen=True)
class Resolved:
    """Resolved values, and the ones that came from the environment (to redact)."""

    values: dict[str, str]
    secrets: frozenset[str]

    def __repr__(self) -> str:  # never print the values
        return f"Resolved(keys={sorted(self.values)})"


def variables(template: str) -> list[str]:
    """Names of the variables ``template`` refers to, in order.

    >>> variables("nats://${HOST:localhost}:${PORT}")
    ['HOST', 'PORT']
    """
    return [m[2] for m in _REF.finditer(template) if not m[1]]


def resolve(templates: Mapping[str, str], environ: Mapping[str, str]) -> Resolved:
    """Resolve every value; raise :class:`UnresolvedError` naming every unset variable.

    >>> resolve({"url": "${U:nats://x}"}, {}).values
    {'url': 'nats://x'}
    """
    missing: list[str] = []
    secrets: set[str] = set()

    def sub(m: re.Match[str]) -> str:
        escaped, name, default = m[1], m[2], m[3]
        if escaped:
            return m[0][1:]
        if name in environ:
            if environ[name]:
                secrets.add(environ[name])
            return environ[name]
        if default is not None:
            return default
        if name not in missing:
            missing.append(name)
        return ""

    out = {key: _REF.sub(sub, value) for key, value in templates.items()}
    if missing:
        raise UnresolvedError(missing)
    return Resolved(out, frozenset(secrets))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
