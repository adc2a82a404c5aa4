"""lattice/yaml_guard.py fast paths (issue 16, loading 10,000 manifests): the plain
constructor gives what PyYAML's gives, the duplicate-key pre-check finds what the full walk
finds, and a document they do not handle goes the old way."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice.yaml_guard import Loader, construct_plain, duplicate_keys

SCALAR_TEXT = ["yes", "no", "on", "true", "False", "~", "null", "", "0x1F", "0o17", "1_000",
               "1:30", "-0", ".inf", "-.Inf", ".nan", "1e3", "2026-01-01",
               "2026-01-01 10:00:00", "3.14", "0777", "012", "+12", "a: b", "- x", "#c",
               "'q'", '"dq"', "é", "\t"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False), st.text(max_size=12),
                    st.sampled_from(SCALAR_TEXT), st.dates(),
                    st.datetimes(min_value=datetime(1900, 1, 1)))
keys = st.one_of(st.text(max_size=8), st.sampled_from(SCALAR_TEXT), st.integers(0, 9),
                 st.booleans())
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=25)


def both(text: str) -> tuple[Any, Any]:
    """(construct_plain, PyYAML) of the only document of ``text``."""
    plain = Loader(text)
    pyyaml = Loader(text)
    try:
        got = construct_plain(plain, plain.get_single_node())
        want = pyyaml.get_single_data()
    finally:
        plain.dispose()
        pyyaml.dispose()
    return got, want


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 == True == 1.0 is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(k, kb) for k, kb in zip(a, b, strict=True)) \
            and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (a != a and b != b)  # nan


@given(documents, st.sampled_from([None, True, False]))
@settings(max_examples=400, deadline=None)
def test_the_plain_constructor_gives_what_pyyaml_gives(doc: Any, flow: bool | None) -> None:
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True)
    try:
        got, want = both(text)
    except LookupError:
        return  # not plain: the loader constructs it
    assert same(got, want), (text, got, want)


@pytest.mark.parametrize("text", [
    "a: yes\nb: 0x1F\nc: ~\nd: 2026-01-01\ne: [1_000, .inf, '1', \"x\"]\nf: {g: 1:30}\n",
    "? [complex, key]\n: value\n",  # a sequence as a key: left to PyYAML (which refuses)
    "a: !!binary aGVsbG8=\n", "a: !!set {x, y}\n", "a: !!omap [x: 1]\n", "a: !custom 1\n",
    "base: &b {x: 1}\nderived: {<<: *b, y: 2}\n",
    "<<: {x: 1}\ny: 2\n",
    "a: " + "[" * 100 + "]" * 100 + "\n",  # deeper than the plain constructor goes
    "s: !!str 12\ni: !!int '7'\n",
])
def test_documents_the_plain_constructor_leaves_are_constructed_as_before(text: str) -> None:
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        try:
            got: Any = construct_plain(loader, node)
        except LookupError:
            return
        except yaml.YAMLError as exc:
            got = type(exc)
    finally:
        loader.dispose()
    try:
        want: Any = yaml.load(text, Loader=Loader)
    except yaml.YAMLError as exc:
        want = type(exc)
    assert same(got, want) or got == want


@given(documents)
@settings(max_examples=200, deadline=None)
def test_the_duplicate_pre_check_misses_nothing(doc: Any) -> None:
    """A document written twice over (its keys repeated) has duplicates exactly where the
    full walk finds them."""
    text = yaml.safe_dump(doc, default_flow_style=False)
    doubled = "".join(line + "\n" + line + "\n" if ":" in line and not line.startswith("-")
                      else line + "\n" for line in text.splitlines())
    for t in (text, doubled):
        loader = Loader(t)
        try:
            node = loader.get_single_node()
        except yaml.YAMLError:
            continue
        finally:
            loader.dispose()
        issues = duplicate_keys(node, "f.yaml")
        full = [] if node is None else _full_walk(node)
        assert bool(issues) == bool(full)


def _full_walk(node: yaml.Node) -> list[str]:
    """Every scalar key written twice in a mapping, by brute force."""
    out: list[str] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, yaml.MappingNode):
            ks = [k.value for k, _ in n.value if isinstance(k, yaml.ScalarNode)
                  and k.value != "<<"]
            out += [k for i, k in enumerate(ks) if k in ks[:i]]
            stack += [x for kv in n.value for x in kv]
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value
    return out


def test_dates_and_times_come_out_as_pyyaml_makes_them() -> None:
    got, want = both("d: 2026-01-01\nt: 2026-01-01 10:00:00\n")
    assert same(got, want) and isinstance(got["d"], date)
