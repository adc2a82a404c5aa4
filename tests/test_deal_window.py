"""The bid window of a shared auction grows with the lattice (issue 15), bounded."""

from __future__ import annotations

from reconciler.auctions import MAX_DEAL_WINDOW, deal_window


def test_small_lattices_keep_the_bid_timeout() -> None:
    assert deal_window(0.25, 0) == 0.25
    assert deal_window(0.25, 1000) == 0.25
    assert deal_window(0.25, 2500) == 0.25


def test_big_lattices_wait_longer_up_to_the_cap() -> None:
    assert deal_window(0.25, 10_000) == 1.0
    assert deal_window(0.25, 1_000_000) == MAX_DEAL_WINDOW


def test_a_long_bid_timeout_is_never_shortened() -> None:
    assert deal_window(3.0, 10_000) == 3.0
