"""Label selectors: parsing, matching, explaining a miss."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lattice import selectors
from lattice.errors import SelectorError
from lattice.selectors import Op


@pytest.mark.parametrize(
    ("rule", "key", "op", "value"),
    [
        ("leds=12", "leds", Op.EQUALS, "12"),
        ("leds==12", "leds", Op.EQUALS, "12"),
        ("zone!=eu", "zone", Op.NOT_EQUALS, "eu"),
        ("gpu", "gpu", Op.EXISTS, None),
        ("!gpu", "gpu", Op.ABSENT, None),
        (" hostcore.os = linux ", "hostcore.os", Op.EQUALS, "linux"),
        ("vinculum.io/role=edge", "vinculum.io/role", Op.EQUALS, "edge"),
    ],
)
def test_parse(rule: str, key: str, op: Op, value: str | None) -> None:
    sel = selectors.parse(rule)
    assert (sel.key, sel.op, sel.value) == (key, op, value)


@pytest.mark.parametrize("rule", ["", "=12", "!a=b", "a b", "a=b=c", "a!", "!", "a=b c"])
def test_bad_rules_name_the_rule(rule: str) -> None:
    with pytest.raises(SelectorError) as info:
        selectors.parse(rule)
    assert repr(rule) in str(info.value)


def test_matching_and_reasons() -> None:
    labels = {"leds": "12", "zone": "eu"}
    assert selectors.satisfied(["leds=12", "zone", "!gpu", "zone!=us"], labels)
    assert selectors.unmet(["leds=12"], {}) == ["label leds missing"]
    assert selectors.unmet(["leds=12"], {"leds": "8"}) == ["label leds=8, wants 12"]
    assert selectors.unmet(["!gpu"], {"gpu": "1"}) == ["label gpu present, wants it absent"]
    assert selectors.unmet(["zone!=eu"], labels) == ["label zone=eu, wants anything else"]
    assert selectors.unmet(["gpu"], labels) == ["label gpu missing"]


keys = st.from_regex(r"[a-z][a-z0-9._-]{0,10}[a-z0-9]", fullmatch=True)
values = st.from_regex(r"[a-z0-9]{0,6}", fullmatch=True)


@given(key=keys, value=values, labels=st.dictionaries(keys, values, max_size=4))
def test_round_trip_and_complement(key: str, value: str, labels: dict[str, str]) -> None:
    eq = selectors.parse(f"{key}={value}")
    ne = selectors.parse(f"{key}!={value}")
    ex = selectors.parse(key)
    ab = selectors.parse(f"!{key}")
    for sel in (eq, ne, ex, ab):
        assert selectors.parse(str(sel)) == sel
    assert eq.matches(labels) != ne.matches(labels)
    assert ex.matches(labels) != ab.matches(labels)


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ("a b", "expected key=value, key!=value, key (exists) or !key (absent)"),
        ("!a=b", "'!' negates a bare key only; use key!=value"),
    ],
)
def test_a_bad_rule_says_what_a_good_one_looks_like(rule: str, why: str) -> None:
    """What the operator reads in the note of a refused revision."""
    with pytest.raises(SelectorError) as info:
        selectors.parse(rule)
    assert (info.value.rule, info.value.why) == (rule, why)
    assert info.value.message == f"invalid affinity rule {rule!r}: {why}"


@pytest.mark.parametrize("rule", [12, None, ["a=b"]])
def test_a_rule_that_is_not_a_string_is_refused_by_its_repr(rule: object) -> None:
    """YAML makes ``- 12`` an int; the message shows the value as written."""
    with pytest.raises(SelectorError) as info:
        selectors.parse(rule)  # type: ignore[arg-type]
    assert (info.value.rule, info.value.why) == (repr(rule), "a rule must be a string")
    assert info.value.message == f"invalid affinity rule {repr(rule)!r}: a rule must be a string"


def test_parse_all_keeps_order_and_stops_at_the_first_bad_rule() -> None:
    assert selectors.parse_all(["zone=eu", "!gpu"]) == (
        selectors.Selector("zone", Op.EQUALS, "eu"), selectors.Selector("gpu", Op.ABSENT))
    assert selectors.parse_all([]) == ()
    with pytest.raises(SelectorError) as info:
        selectors.parse_all(["zone=eu", "a b", "c d"])
    assert info.value.rule == "a b"


def test_parsed_selectors_are_taken_as_they_are() -> None:
    """The planner hands unmet() parsed selectors; they are used, not parsed again."""
    parsed = selectors.parse_all(["leds=12", "!gpu"])
    assert selectors.unmet(parsed, {"leds": "12"}) == []
    assert selectors.unmet(parsed, {"leds": "8", "gpu": "1"}) == [
        "label leds=8, wants 12", "label gpu present, wants it absent"]
    assert selectors.satisfied(parsed, {"leds": "12"})
    assert not selectors.satisfied([*parsed, "zone"], {"leds": "12"})


@pytest.mark.parametrize(
    ("rule", "shown"),
    [("leds==12", "leds=12"), (" zone != eu ", "zone!=eu"), ("gpu", "gpu"), ("! gpu", "!gpu")],
)
def test_a_rule_is_shown_in_its_canonical_form(rule: str, shown: str) -> None:
    """How ``describe`` and the status show a rule, whatever spacing it was written with."""
    assert str(selectors.parse(rule)) == shown
