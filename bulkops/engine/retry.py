"""How long to wait before a retry, and whether the run can still afford one.

    Backoff      exponential backoff with full jitter; honours Retry-After; a floor for 429s
    RetryBudget  retries of one project limited to a share of its first attempts

Backoff: the wait after `attempt` failed attempts (attempt >= 1) is
`uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))` ("full jitter", which spreads the retries of
requests that failed together). The server's `Retry-After`, when it sent one, is a floor on top, capped at
`RETRY_AFTER_CAP` (120 s) so that a silly header cannot park an instance for hours.

429s are not retries. A throttled row goes back to the front of its project's queue and waits for the
project's (now slower) bucket: it spends neither the budget nor `--max-attempts` (see `engine`). Only a
bucket that does not adapt waits out `THROTTLE_FLOOR` after a 429 (Huawei advises a few seconds).

RetryBudget (the token-bucket retry budget of gRPC and Finagle, with botocore's refund): one per project,
so that one project's outage cannot spend another's retries. It starts with `floor` tokens, each first
attempt deposits `ratio` tokens, each retry spends one, and a retried request that then succeeds gives its
token back, so retries that work cost nothing and only failing ones drain it: during an outage retries
stay below `ratio` of traffic plus the floor. The balance is capped at `floor + ratio * BUDGET_WINDOW`
(1000 first attempts' worth), so that a long healthy run cannot bank thousands of retries and then spend
them all on a later outage.
"""

from __future__ import annotations

import random

from bulkops.options import RetryPolicy

#: The longest Retry-After honoured, in seconds.
RETRY_AFTER_CAP = 120.0
#: The pause after a 429 for a bucket that does not adapt, without Retry-After, in seconds.
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

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after `attempt` failed attempts (1 after the first failure).

        `retry_after` is the server's Retry-After in seconds, if it sent one.
        """
        wait = self._rng.uniform(0.0, self.ceiling(attempt))
        if retry_after is not None and retry_after > 0:
            wait = max(wait, min(retry_after, RETRY_AFTER_CAP))
        return wait


class RetryBudget:
    """Retries of one project, earned by its first attempts. Not thread-safe (one event loop)."""

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

    def refund(self) -> None:
        """A retried request succeeded: give back the retry it cost (botocore's retry quota does too)."""
        self._balance = min(self._cap, self._balance + 1.0)

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and nothing taken) when the budget is spent."""
        if self._balance >= 1.0:
            self._balance -= 1.0
            self.retries += 1
            return True
        self.denied += 1
        return False
