"""A host's labels: from ``--label k=v``, from ``LATTICE_LABEL_<KEY>`` variables, built-ins.

Pure functions, no I/O beyond reading the platform. :func:`host_labels` is what
:mod:`hostagent.main` gives the :class:`~hostagent.host.Host`; auctions match affinity
rules (:mod:`lattice.selectors`) against the result.
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Iterable, Mapping

ENV_PREFIX = "LATTICE_LABEL_"
BUILTIN_PREFIX = "hostcore."
_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^[A-Za-z0-9._:/-]*$")


class LabelError(ValueError):
    """A label that is not ``key=value`` with a valid key and value."""


def check_label(key: str, value: str) -> None:
    """Raise :class:`LabelError` unless ``key`` and ``value`` can be matched by selectors."""
    if not _KEY.match(key):
        raise LabelError(
            f"invalid label key {key!r}: letters, digits, '.', '_', '-', '/', "
            "starting and ending with a letter or digit"
        )
    if not _VALUE.match(value):
        raise LabelError(f"invalid value {value!r} for label {key}: letters, digits, '._:/-'")


def parse_label(text: str) -> tuple[str, str]:
    """Parse ``key=value`` (as given to ``--label``).

    >>> parse_label("leds=12")
    ('leds', '12')
    """
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep:
        raise LabelError(f"invalid label {text!r}: expected key=value")
    check_label(key, value)
    return key, value


def builtin_labels() -> dict[str, str]:
    """``hostcore.os``, ``hostcore.arch`` and ``hostcore.python`` of this machine."""
    return {
        "hostcore.os": sys.platform,
        "hostcore.arch": platform.machine().lower() or "unknown",
        "hostcore.python": platform.python_version(),
    }


def env_labels(environ: Mapping[str, str]) -> dict[str, str]:
    """Labels from ``LATTICE_LABEL_<KEY>=value`` variables; the key is lower-cased.

    >>> env_labels({"LATTICE_LABEL_ZONE": "eu-1", "HOME": "/root"})
    {'zone': 'eu-1'}
    """
    out: dict[str, str] = {}
    for name, value in sorted(environ.items()):
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            key = name[len(ENV_PREFIX):].lower()
            check_label(key, value)
            out[key] = value
    return out


def host_labels(cli: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """Built-ins, overridden by environment labels, overridden by ``--label`` ones.

    A user label may not redefine a built-in ``hostcore.*`` label: the lattice relies on
    those describing the machine truthfully.
    """
    labels = builtin_labels()
    user = env_labels(environ)
    for text in cli:
        key, value = parse_label(text)
        user[key] = value
    for key in user:
        if key.startswith(BUILTIN_PREFIX):
            raise LabelError(f"label {key} is built in (hostcore.* describes the machine)")
    labels.update(user)
    return labels
