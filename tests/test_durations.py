"""Durations on command lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lattice.durations import parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("250ms", 0.25), ("2m", 120.0), ("1h", 3600.0), ("1d", 86400.0),
    ("1m30s", 90.0), ("1.5", 1.5), (" 45 ", 45.0), ("0", 0.0), (2, 2.0), ("1.5s", 1.5),
])
def test_examples(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "30x", "-1", "1s2", "m30", "1 s", "nan", "ten"])
def test_refused_with_the_text_named(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(0, 10**6), st.sampled_from(["ms", "s", "m", "h"]))
def test_number_and_unit(n: int, unit: str) -> None:
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    assert parse_duration(f"{n}{unit}") == pytest.approx(n * factor)
