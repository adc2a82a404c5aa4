"""The one backoff policy (lattice.backoff): exact delays, the cap, and the jitter's range."""

from __future__ import annotations

import random

import pytest

from lattice.backoff import Backoff


class Fixed(random.Random):
    """A random source that always draws ``r``."""

    def __init__(self, r: float) -> None:
        super().__init__()
        self.r = r

    def random(self) -> float:
        return self.r


@pytest.mark.parametrize(("policy", "want"), [
    (Backoff(base=0.5, max=30.0), [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),
    (Backoff(base=1.0, max=60.0), [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]),
    (Backoff(base=0.1, factor=3.0, max=1.0), [0.1, 0.3, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0]),
])
def test_delays_grow_by_the_factor_up_to_the_cap(policy: Backoff, want: list[float]) -> None:
    assert [policy.delay(n) for n in range(len(want))] == pytest.approx(want)


def test_jitter_takes_up_to_its_share_off_never_adds() -> None:
    policy = Backoff(base=2.0, max=30.0, jitter=0.5)
    assert policy.delay(1, Fixed(0.0)) == 4.0  # the full delay
    assert policy.delay(1, Fixed(0.5)) == 3.0
    assert policy.delay(1, Fixed(1.0)) == 2.0  # at most half off
    rng = random.Random(7)
    draws = [policy.delay(10, rng) for _ in range(1000)]
    assert all(15.0 <= d <= 30.0 for d in draws)  # never above the cap
    assert max(draws) - min(draws) > 10.0  # and spread out
    assert policy.jittered(1.0, Fixed(1.0)) == 0.5  # a delay an error carries


def test_a_huge_attempt_count_is_the_cap_and_a_negative_one_the_base() -> None:
    policy = Backoff(base=0.5, max=30.0)
    assert policy.delay(10_000) == 30.0
    assert policy.delay(-3) == 0.5


@pytest.mark.parametrize("kw", [{"base": -1.0}, {"base": 1.0, "factor": 0.5},
                                {"base": 1.0, "jitter": 1.5}])
def test_nonsense_policies_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="not a backoff policy"):
        Backoff(**kw)
