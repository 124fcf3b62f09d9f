"""Backoff and the retry budget: pure arithmetic on an injected random source, nothing sleeps."""

from __future__ import annotations

import random

import pytest

from bulkops.engine.retry import RETRY_AFTER_CAP, Backoff, RetryBudget
from bulkops.options import RetryPolicy


def _backoff(seed: int = 0, **kwargs: float) -> Backoff:
    return Backoff(RetryPolicy(**kwargs), random.Random(seed))  # type: ignore[arg-type]


def test_delay_is_full_jitter_under_an_exponential_ceiling() -> None:
    """The wait after the n-th failure lies in [0, base * 2**(n-1)], so retries spread out and grow."""
    backoff = _backoff(base_delay=0.5, max_delay=20.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (6, 16.0), (7, 20.0), (50, 20.0)]:
        assert backoff.ceiling(attempt) == ceiling
        waits = [backoff.delay(attempt) for _ in range(500)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert max(waits) > 0.9 * ceiling  # jitter covers the range, not a fixed value
        assert min(waits) < 0.1 * ceiling


def test_delay_is_reproducible_with_a_seeded_rng() -> None:
    """The same seed gives the same waits, so tests and simulations are deterministic."""
    assert [_backoff(7).delay(3) for _ in range(3)] == [_backoff(7).delay(3) for _ in range(3)]


def test_huge_attempt_numbers_do_not_overflow() -> None:
    """Any attempt count gives a finite wait of at most max_delay."""
    assert 0.0 <= _backoff(max_delay=5.0).delay(10_000) <= 5.0


def test_attempt_starts_at_one() -> None:
    """Asking for the wait before any failure is a programming error."""
    with pytest.raises(ValueError, match="starts at 1"):
        _backoff().delay(0)


def test_retry_after_is_a_floor() -> None:
    """A server's Retry-After is honoured: the wait is never shorter than it asks."""
    backoff = _backoff()
    assert all(backoff.delay(1, retry_after=7.0) >= 7.0 for _ in range(100))
    # A longer jittered wait than Retry-After is kept.
    assert (
        max(_backoff(s, base_delay=60.0, max_delay=60.0).delay(1, retry_after=1.0) for s in range(20)) > 1.0
    )


def test_retry_after_is_capped() -> None:
    """A Retry-After of hours is capped so an instance is not parked for the rest of the run."""
    assert _backoff().delay(1, retry_after=86_400.0) == RETRY_AFTER_CAP


def test_retry_after_on_a_5xx_is_a_floor_on_the_backoff() -> None:
    """A 503 with Retry-After waits at least what the server asked, not the shorter jittered backoff."""
    backoff = _backoff(base_delay=0.1, max_delay=0.1)
    assert all(backoff.delay(1, retry_after=0.3) == 0.3 for _ in range(50))


def test_a_retry_that_succeeds_gives_its_budget_back() -> None:
    """Retries that work cost nothing: a refunded budget lets the next failures retry too."""
    budget = RetryBudget(ratio=0.0, floor=2)
    assert budget.try_spend() and budget.try_spend()
    assert not budget.try_spend()
    budget.refund()
    assert budget.try_spend()
    budget.refund()
    budget.refund()
    budget.refund()
    assert budget.balance == budget.cap == 2  # never above the cap


def test_budget_starts_with_floor_and_refuses_when_spent() -> None:
    """With no first attempts yet, exactly `floor` retries are allowed, then none."""
    budget = RetryBudget(ratio=0.2, floor=3)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
    assert budget.retries == 3
    assert budget.denied == 1


def test_budget_earns_ratio_per_first_attempt() -> None:
    """Retries stay at most `ratio` of first attempts (plus the floor) during an outage."""
    budget = RetryBudget(ratio=0.2, floor=0)
    granted = 0
    for _ in range(100):
        budget.on_request()
        granted += budget.try_spend()
        granted += budget.try_spend()  # every request wants two retries
    assert granted == 20


def test_budget_balance_is_capped() -> None:
    """A long healthy run does not bank unlimited retries for a later outage."""
    budget = RetryBudget(ratio=0.2, floor=20)
    for _ in range(1_000_000):
        budget.on_request()
    assert budget.balance == budget.cap == 20 + 0.2 * 1000
    assert sum(budget.try_spend() for _ in range(1000)) == 220


def test_budget_from_policy() -> None:
    """The run's budget follows --max-attempts' RetryPolicy (ratio and floor)."""
    budget = RetryBudget.from_policy(RetryPolicy(budget_ratio=0.5, budget_floor=2))
    assert budget.balance == 2
    budget.on_request()
    assert budget.balance == 2.5


def test_zero_budget_never_retries() -> None:
    """ratio 0 and floor 0 turn retries off entirely."""
    budget = RetryBudget(ratio=0.0, floor=0)
    budget.on_request()
    assert not budget.try_spend()
