"""The command line of the generated documents (docs/protocol.md, docs/security.md).

One ``main`` for both: write the document, or with ``--check`` say whether it is current.
``render`` takes the document as it stands (empty when there is none) so that a document
whose prose is written by hand can be regenerated in part.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def main(argv: Sequence[str] | None, *, default: Path, render: Callable[[str], str],
         module: str) -> int:
    """``[--check] [PATH]``: write ``render(current)`` to PATH (``default``), or with
    ``--check`` exit 1 when that differs from what PATH holds. ``-h``/``--help`` prints the
    usage and writes nothing; any other option is refused (exit 2), never taken for a path."""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = (f"usage: python -m {module} [--check] [PATH]\n\n"
             f"Write {default.name} (default {default}), or with --check exit 1 when it is\n"
             "out of date.")
    if "-h" in args or "--help" in args:
        print(usage)
        return 0
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    unknown = [a for a in paths if a.startswith("-")]
    if unknown or len(paths) > 1:
        print(f"{usage}\n\nerror: unexpected argument {(unknown or paths[1:])[0]!r}",
              file=sys.stderr)
        return 2
    path = Path(paths[0]) if paths else default
    current = path.read_text() if path.exists() else ""
    text = render(current)
    if check:
        if current != text:
            print(f"{path} is out of date: run python -m {module}", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0
