"""The data plane is not the control plane: which subjects an application may use.

Pure functions, no I/O. An actor reaches NATS only through the ``wascc:messaging``
provider: its ``Publish`` host call and the ``SUBSCRIPTION`` of its binding. Neither may
touch the lattice's own namespaces, the ones the ``apps`` role of a secured lattice is
denied (:data:`lattice.auth.roles.RESERVED`: ``lattice.>``, ``$JS.>``, ``$KV.>``,
``$O.>``, ``$SYS.>``, ``$JSC.>``, ``$NRG.>``, ``_INBOX.>``), nor any subject whose first
token begins with ``_INBOX`` (every role's inbox, ``_INBOX_apps`` included). In a secured
lattice the server enforces the same list on the provider's own connection; these checks
make an insecure lattice (``up --insecure``, a host without ``--apps-creds``) refuse the
same subjects, in words the guest reads.

:func:`publish_problem` and :func:`subscription_problem` return why a subject breaks the
rule, or None. Used by :mod:`hostagent.providers.messaging_nats`.
"""

from __future__ import annotations

from lattice.auth.roles import RESERVED

#: Longest subject an application may use: a NATS control line is at most 4096 bytes
#: (the server closes a connection that sends a longer one), and a subject shares it.
MAX_SUBJECT = 1024
_INBOX = "_INBOX"
_SHOWN = 80


def _shown(subject: str) -> str:
    return repr(subject if len(subject) <= _SHOWN else subject[:_SHOWN] + "...")


def overlaps(a: list[str], b: list[str]) -> bool:
    """Whether some subject matches both token patterns (``*`` one token, ``>`` one or
    more at the end). Pure."""
    for i, token in enumerate(a):
        if i >= len(b):
            return False
        other = b[i]
        if ">" in (token, other):
            return True
        if token != other and "*" not in (token, other):
            return False
    return len(a) == len(b)


def _syntax_problem(subject: str) -> str | None:
    if not subject:
        return "the subject is empty"
    if len(subject) > MAX_SUBJECT:
        return f"the subject has {len(subject)} characters, over the limit of {MAX_SUBJECT}"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in subject):
        return f"subject {_shown(subject)} has a space or a control character"
    if "" in subject.split("."):
        return f"subject {_shown(subject)} has an empty token"
    tokens = subject.split(".")
    if ">" in tokens[:-1]:
        return f"subject {_shown(subject)} has '>' before its last token"
    return None


def reserved_namespace(subject: str) -> str | None:
    """The reserved namespace (e.g. ``$KV.>``) a subject or pattern may reach, or None.
    Pure."""
    tokens = subject.split(".")
    if tokens[0].startswith(_INBOX):
        return f"{_INBOX}*"
    for namespace in RESERVED:
        if overlaps(tokens, namespace.split(".")):
            return namespace
    return None


def _reserved_problem(subject: str) -> str | None:
    namespace = reserved_namespace(subject)
    if namespace is None:
        return None
    return (f"subject {_shown(subject)} reaches the lattice's reserved namespace "
            f"{namespace}: actors may use application subjects only (docs/security.md, "
            "The data plane)")


def publish_problem(subject: str) -> str | None:
    """Why an actor may not ``Publish`` to ``subject`` (a wildcard, bad syntax, or a
    reserved namespace), or None. Pure."""
    problem = _syntax_problem(subject)
    if problem is not None:
        return problem
    if any(token in ("*", ">") for token in subject.split(".")):
        return f"subject {_shown(subject)} has a wildcard: a message goes to one subject"
    return _reserved_problem(subject)


def subscription_problem(pattern: str) -> str | None:
    """Why a binding may not subscribe an actor to ``pattern`` (bad syntax, or a pattern
    that could match a reserved subject, ``>`` and ``*.x`` included), or None. Pure."""
    return _syntax_problem(pattern) or _reserved_problem(pattern)
