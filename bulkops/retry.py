"""How long to wait before a retry, and whether the run can still afford one.

    Backoff      exponential backoff with full jitter; honours Retry-After; a floor for 429s
    RetryBudget  retries across the whole run limited to a share of first attempts

Backoff: the wait after `attempt` failed attempts (attempt >= 1) is
`uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))` ("full jitter", which spreads the retries of
requests that failed together). Two floors apply on top:

* the server's `Retry-After`, when it sent one: the wait is at least that, capped at `RETRY_AFTER_CAP`
  (120 s) so that a silly header cannot park an instance for hours;
* a 429 without `Retry-After`: at least `uniform(THROTTLE_FLOOR, 2 * THROTTLE_FLOOR)` (1-2 s). Huawei
  advises waiting a few seconds; the gateway's usual window is one second, so a retry 1-2 s later lands in
  a fresh window, and the jitter keeps the throttled requests of one burst from coming back together. The
  adaptive limiter does the real slowing down: the retry also waits for its project's token.

RetryBudget (the token-bucket retry budget of gRPC and Finagle): it starts with `floor` tokens, each first
attempt deposits `ratio` tokens and each retry spends one, so retries stay below `ratio` of traffic plus the
floor. The balance is capped at `floor + ratio * BUDGET_WINDOW` (1000 first attempts' worth), so that a long
healthy run cannot bank thousands of retries and then spend them all on a later outage.
"""

from __future__ import annotations

import random

from bulkops.options import RetryPolicy

#: The longest Retry-After honoured, in seconds.
RETRY_AFTER_CAP = 120.0
#: The least wait after a 429 without Retry-After, in seconds (the wait is uniform in [floor, 2 * floor)).
THROTTLE_FLOOR = 1.0
#: How many first attempts' deposits the retry budget may bank beyond its floor.
BUDGET_WINDOW = 1000


class Backoff:
    """Waits between attempts for one `RetryPolicy`; `rng` is injectable for reproducible tests."""

    __slots__ = ("_policy", "_rng")

    def __init__(self, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self._policy = policy
        self._rng = rng if rng is not None else random.Random()

    @property
    def policy(self) -> RetryPolicy:
        """The policy this backoff follows."""
        return self._policy

    def ceiling(self, attempt: int) -> float:
        """The most the jittered wait after `attempt` failed attempts can be (Retry-After aside)."""
        if attempt < 1:
            raise ValueError(f"attempt counts failed attempts and starts at 1, got {attempt!r}")
        p = self._policy
        # min() before the power would overflow for large attempts.
        exponent = min(attempt - 1, 64)
        return min(p.max_delay, p.base_delay * 2.0**exponent)

    def delay(self, attempt: int, retry_after: float | None = None, *, throttled: bool = False) -> float:
        """Seconds to wait after `attempt` failed attempts (1 after the first failure).

        `retry_after` is the server's Retry-After in seconds, if it sent one; `throttled` says the failure
        was a 429, which waits at least 1-2 s when there is no Retry-After.
        """
        wait = self._rng.uniform(0.0, self.ceiling(attempt))
        if retry_after is not None and retry_after > 0:
            wait = max(wait, min(retry_after, RETRY_AFTER_CAP))
        elif throttled:
            wait = max(wait, THROTTLE_FLOOR * (1.0 + self._rng.random()))
        return wait


class RetryBudget:
    """Retries for the whole run, earned by first attempts. Not thread-safe (one event loop)."""

    __slots__ = ("_balance", "_cap", "_ratio", "denied", "retries")

    def __init__(self, ratio: float, floor: int) -> None:
        if ratio < 0 or floor < 0:
            raise ValueError("ratio and floor must be zero or more")
        self._ratio = ratio
        self._balance = float(floor)
        self._cap = floor + ratio * BUDGET_WINDOW
        self.retries = 0
        """Retries granted so far."""
        self.denied = 0
        """Retries refused so far."""

    @classmethod
    def from_policy(cls, policy: RetryPolicy) -> RetryBudget:
        """The budget a `RetryPolicy` describes (`budget_ratio`, `budget_floor`)."""
        return cls(policy.budget_ratio, policy.budget_floor)

    @property
    def balance(self) -> float:
        """Retries that could be granted now (may be fractional)."""
        return self._balance

    @property
    def cap(self) -> float:
        """The most the balance can hold."""
        return self._cap

    def on_request(self) -> None:
        """Count a first attempt: deposits `ratio` of a retry."""
        self._balance = min(self._cap, self._balance + self._ratio)

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and nothing taken) when the budget is spent."""
        if self._balance >= 1.0:
            self._balance -= 1.0
            self.retries += 1
            return True
        self.denied += 1
        return False
