"""docs/actors.md shows a complete guest, "complete as shown": it must stay the example
actor the lattice really runs, examples/actors/echo.wat. The block compiles with wasmtime
into a valid module, reads the same as echo.wat but for comments, claims the same
capabilities, and compiles to the same bytes, so the two cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import wasmtime

from cli.examples import EXAMPLE_ACTORS, capabilities_of

DOC = Path(__file__).resolve().parent.parent / "docs" / "actors.md"
ECHO = EXAMPLE_ACTORS / "echo.wat"


def doc_guest() -> str:
    """The ```wat block of the "A complete guest" section of docs/actors.md."""
    section = DOC.read_text().partition("\n## A complete guest\n")[2]
    assert section, "docs/actors.md has no 'A complete guest' section"
    section = section.partition("\n## ")[0]
    blocks = re.findall(r"^```wat\n(.*?)^```$", section, re.S | re.M)
    assert len(blocks) == 1, f"expected one wat block in the section, found {len(blocks)}"
    return str(blocks[0])


def without_comments(wat: str) -> list[str]:
    """The code lines of ``wat``: ``;;`` comments and blank lines dropped, spaces trimmed
    (no string in these guests holds ``;;``)."""
    lines = (line.partition(";;")[0].rstrip() for line in wat.splitlines())
    return [line for line in lines if line.strip()]


def test_the_documented_guest_compiles_to_a_valid_module() -> None:
    wasm = bytes(wasmtime.wat2wasm(doc_guest()))
    module = wasmtime.Module(wasmtime.Engine(), wasm)
    exports = {e.name for e in module.exports}
    assert {"memory", "__guest_call"} <= exports


def test_the_documented_guest_is_examples_echo() -> None:
    doc, echo = doc_guest(), ECHO.read_text()
    assert without_comments(doc) == without_comments(echo), (
        "docs/actors.md's complete guest and examples/actors/echo.wat differ: copy one"
        " into the other")
    claims = [re.findall(r"^\s*;;\s*capabilities:.*$", t, re.M) for t in (doc, echo)]
    assert claims[0] == claims[1] and claims[0], claims  # the comment that is not one
    assert capabilities_of("echo", doc) == ("wascc:messaging", "wascc:http_server")
    assert bytes(wasmtime.wat2wasm(doc)) == bytes(wasmtime.wat2wasm(echo))


def test_without_comments_sees_a_change_of_code() -> None:
    echo = ECHO.read_text()
    assert without_comments(echo + "\n;; a note\n") == without_comments(echo)
    assert without_comments(echo.replace("i32.const 13", "i32.const 12")) != (
        without_comments(echo))
