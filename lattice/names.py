"""Names that become NATS subject tokens or file paths, each checked against one alphabet.

Pure functions, no I/O. A binding name ends a subject
(``lattice.<id>.rpc.provider.<actor>.<capability_id>.<binding_name>``), so a name holding
``.``, ``*``, ``>`` or a space would change what the subject means; a metadata name
becomes a file name on the status branch (``deployments/<name>.yaml``), so ``/`` or
``..`` would escape its folder. Every ``*_problem`` function returns why a value breaks
its rule, with the rule in the message (``binding_name '>': use letters, ...``), or None.
The manifest models (:mod:`lattice.manifests`) and the command models of the wire
protocol (:mod:`lattice.protocol.models`) use the same functions, so a hostile name is
refused by ``latticectl apply``, by the agent reading a commit and by a host receiving a
command alike. Rules are written out as character sets, not regular expressions, so the
message and the check cannot drift apart.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator

#: Longest binding name or vendor id.
MAX_TOKEN = 64
#: Longest metadata name (a DNS-1123 label, as Kubernetes names are).
MAX_NAME = 63
#: Longest capability id (``namespace:name``).
MAX_CAPABILITY = 128

_DIGITS = frozenset(string.digits)
_LOWER = frozenset(string.ascii_lowercase)
_TOKEN = frozenset(string.ascii_letters) | _DIGITS | {"-", "_"}
_CAPABILITY_PART = _LOWER | _DIGITS | {"-", "_"}
_NAME = _LOWER | _DIGITS | {"-"}
_BASE32 = frozenset(string.ascii_uppercase) | frozenset("234567")

#: How much of a bad value an error message shows.
_SHOWN = 80

#: A check: why a value breaks a rule, or None.
Check = Callable[[object], str | None]

TOKEN_RULE = f"use letters (a-z, A-Z), digits, '-' and '_', 1 to {MAX_TOKEN} characters"
CAPABILITY_RULE = (
    "use namespace:name, each part of lower-case letters, digits, '-' and '_' "
    f"(e.g. wascc:messaging), at most {MAX_CAPABILITY} characters"
)
NAME_RULE = (
    "use lower-case letters, digits and '-', starting and ending with a letter or digit, "
    f"1 to {MAX_NAME} characters"
)
ACTOR_TOKEN_RULE = "use upper-case letters A-Z and digits 2-7 (an actor's public key)"


def _bad_char(value: str, allowed: frozenset[str]) -> str | None:
    """The first character of ``value`` outside ``allowed``, or None."""
    return next((c for c in value if c not in allowed), None)


def _problem(field: str, value: object, rule: str, why: str = "") -> str:
    if isinstance(value, str):
        shown = repr(value) if len(value) <= _SHOWN else f"{value[:_SHOWN]!r}..."
    else:
        shown = f"of type {type(value).__name__}"
    return f"{field} {shown}{why}: {rule}"


def _char_note(c: str) -> str:
    return f" has {c!r}"


def token_problem(value: object, field: str = "binding_name") -> str | None:
    """Why ``value`` is not a safe subject token (a binding name, a vendor id), or None.

    >>> token_problem(">")
    "binding_name '>' has '>': use letters (a-z, A-Z), digits, '-' and '_', 1 to 64 characters"
    """
    return _alphabet_problem(value, field, TOKEN_RULE, _TOKEN, MAX_TOKEN)


def _alphabet_problem(value: object, field: str, rule: str, alphabet: frozenset[str],
                      longest: int) -> str | None:
    """Why ``value`` is not a string of 1 to ``longest`` characters of ``alphabet``."""
    if not isinstance(value, str):
        return _problem(field, value, rule)
    if not 1 <= len(value) <= longest:
        return _problem(field, value, rule, f" has {len(value)} characters")
    bad = _bad_char(value, alphabet)
    if bad is not None:
        return _problem(field, value, rule, _char_note(bad))
    return None


def binding_name_problem(value: object) -> str | None:
    """Why ``value`` is not a binding name (wasmCloud's "link name"), or None."""
    return token_problem(value, "binding_name")


def vendor_id_problem(value: object) -> str | None:
    """Why ``value`` is not a vendor id, or None."""
    return token_problem(value, "vendor_id")


def capability_id_problem(value: object) -> str | None:
    """Why ``value`` is not a capability id (``namespace:name``, no '.'), or None."""
    field = "capability_id"
    if not isinstance(value, str):
        return _problem(field, value, CAPABILITY_RULE)
    if len(value) > MAX_CAPABILITY:
        return _problem(field, value, CAPABILITY_RULE, f" has {len(value)} characters")
    parts = value.split(":")
    if len(parts) != 2:
        return _problem(field, value, CAPABILITY_RULE, f" has {len(parts) - 1} ':'")
    if not all(parts):
        return _problem(field, value, CAPABILITY_RULE, " has an empty part")
    bad = _bad_char(parts[0] + parts[1], _CAPABILITY_PART)
    if bad is not None:
        return _problem(field, value, CAPABILITY_RULE, _char_note(bad))
    return None


def metadata_name_problem(value: object) -> str | None:
    """Why ``value`` is not a metadata name (a DNS-1123 label, also a file name), or None."""
    field = "metadata.name"
    problem = _alphabet_problem(value, field, NAME_RULE, _NAME, MAX_NAME)
    if problem is not None or not isinstance(value, str):
        return problem
    if value[0] == "-" or value[-1] == "-":
        return _problem(field, value, NAME_RULE, " starts or ends with '-'")
    return None


def actor_token_problem(value: object) -> str | None:
    """Why ``value`` cannot be an actor id in a subject (the alphabet only; the manifests
    also check length, prefix and checksum with :func:`lattice.ids.actor_id_problem`)."""
    field = "actor_id"
    if not isinstance(value, str):
        return _problem(field, value, ACTOR_TOKEN_RULE)
    if not value:
        return _problem(field, value, ACTOR_TOKEN_RULE, " is empty")
    bad = _bad_char(value, _BASE32)
    if bad is not None:
        return _problem(field, value, ACTOR_TOKEN_RULE, _char_note(bad))
    return None


def _validated(check: Check) -> AfterValidator:
    """A pydantic validator raising ``ValueError(problem)`` when ``check`` finds one."""

    def validate(value: str) -> str:
        problem = check(value)
        if problem:
            raise ValueError(problem)
        return value

    return AfterValidator(validate)


#: Field types for pydantic models: the check runs after the value is known to be a str.
BindingName = Annotated[str, _validated(binding_name_problem)]
VendorId = Annotated[str, _validated(vendor_id_problem)]
CapabilityId = Annotated[str, _validated(capability_id_problem)]
MetadataName = Annotated[str, _validated(metadata_name_problem)]
ActorToken = Annotated[str, _validated(actor_token_problem)]
