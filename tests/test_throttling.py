"""Throttling is pacing, never failure: the engine against a gateway whose limits it is not told (fake clock).

Every test runs with the default `RetryPolicy` (budget, --max-attempts) and the default
`--throttle-timeout`: the point is what users get, not what a raised budget hides. The gateway here is a
small model of Huawei's: a token bucket per project (one window's worth, refilled continuously), an
optional one per credential, 429 `APIG.0308` with a `limit:N,time:...` hint or a bare message, an
optional Retry-After, and limits that may change mid-run.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
import structlog

from bulkops.clock import FakeClock
from bulkops.engine import stop_instances
from bulkops.models import THROTTLED, Outcome, Reply, Result, Target
from bulkops.options import Options, RateLimit

pytestmark = pytest.mark.anyio

LATENCY = 0.05
OK = Reply(200, status="STOPPING", request_id="r")


def pid(n: int) -> str:
    return f"{n:032x}"


def iid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012x}"


@dataclass
class _Bucket:
    limit: float  # requests per window
    window: float
    tokens: float
    stamp: float = 0.0

    def admit(self, now: float, factor: float) -> bool:
        rate = self.limit * factor / self.window
        cap = max(1.0, self.limit * factor)
        self.tokens = min(cap, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Gateway:
    """A fake cloud behind a throttling gateway; `stop` answers after LATENCY fake seconds."""

    clock: FakeClock
    limits: dict[str, tuple[float, float]]  # project -> (limit, window seconds)
    hints: bool = True
    retry_after: bool = False
    shared: tuple[float, float] | None = None  # one credential's limit across projects ('policy user')
    schedule: tuple[tuple[float, float], ...] = ()  # (at, factor): limits scale mid-run
    stated: str | None = None  # a message to state instead of the real limit (an absurd hint)
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    credential: _Bucket | None = None
    requests: int = 0
    throttled: int = 0
    sent_at: dict[str, list[float]] = field(default_factory=dict)

    def factor(self, now: float) -> float:
        f = 1.0
        for at, k in self.schedule:
            if now >= at:
                f = k
        return f

    def _refusal(self, limit: float, window: float, policy: str, wait: float) -> Reply:
        unit = "second" if window == 1.0 else "minute"
        if self.stated is not None:
            msg = self.stated
        elif self.hints:
            msg = (
                "The throttling threshold has been reached: "
                f"policy {policy} over ratelimit,limit:{limit:g},time:1 {unit}"
            )
        else:
            msg = "The throttling threshold has been reached"
        retry_after = float(max(1, math.ceil(wait))) if self.retry_after else None
        return Reply(429, error_code="APIG.0308", error_msg=msg, retry_after=retry_after)

    async def stop(self, project_id: str, instance_id: str) -> Reply:
        now = self.clock.monotonic()
        self.requests += 1
        self.sent_at.setdefault(project_id, []).append(now)
        reply = self._admit(project_id, now)
        await self.clock.sleep(LATENCY)
        if reply is not None:
            self.throttled += 1
            return reply
        return OK

    async def show(self, project_id: str, instance_id: str) -> Reply:
        await self.clock.sleep(LATENCY)
        return Reply(200, status="STOPPED")

    def _admit(self, project_id: str, now: float) -> Reply | None:
        factor = self.factor(now)
        if self.shared is not None:
            if self.credential is None:
                self.credential = _Bucket(self.shared[0], self.shared[1], self.shared[0], now)
            if not self.credential.admit(now, factor):
                return self._refusal(self.shared[0] * factor, self.shared[1], "user", 1.0)
        limit = self.limits.get(project_id)
        if limit is None:
            return None
        bucket = self.buckets.get(project_id)
        if bucket is None:
            bucket = self.buckets[project_id] = _Bucket(limit[0], limit[1], limit[0], now)
        if bucket.admit(now, factor):
            return None
        return self._refusal(limit[0] * factor, limit[1], "api", limit[1] / limit[0])


def rows(counts: dict[str, int]) -> list[Target]:
    """Rows sorted by project, as exports usually are."""
    out: list[Target] = []
    for project, n in counts.items():
        out.extend(Target(len(out) + 1, project, iid(len(out))) for _ in range(n))
    return out


async def run(items: list[Target], gateway: Gateway, **kw: object) -> list[Result]:
    """One run on the fake clock with the default policy; every result, in order of finishing."""
    options = Options(endpoint="http://127.0.0.1:9", **kw)  # type: ignore[arg-type]
    out: list[Result] = []
    async with (
        gateway.clock.autojumping(),
        stop_instances(items, options, client=gateway, clock=gateway.clock, rng=random.Random(1)) as r,
    ):
        async for result in r:
            out.append(result)
    return out


def assert_all_accepted(results: list[Result], n: int) -> None:
    counts = Counter(r.outcome for r in results)
    assert counts == {Outcome.ACCEPTED: n}, counts


UNEQUAL = {pid(1): (5.0, 1.0), pid(2): (10.0, 1.0), pid(3): (25.0, 1.0), pid(4): (50.0, 1.0)}


def twenty_seconds(limits: dict[str, tuple[float, float]]) -> dict[str, int]:
    return {p: int(20 * n / w) for p, (n, w) in limits.items()}


@pytest.mark.parametrize("too_high", [2, 10, 100])
async def test_a_limit_far_below_rate_costs_no_row_and_few_429s(too_high: int) -> None:
    """--rate 2x, 10x or 100x the real (unequal, unknown) limits: every row accepted, under 2 % 429s."""
    gateway = Gateway(FakeClock(), UNEQUAL)
    items = rows(twenty_seconds(UNEQUAL))
    results = await run(items, gateway, rate=RateLimit(50.0 * too_high))
    assert_all_accepted(results, len(items))
    assert gateway.throttled <= 0.02 * gateway.requests, (gateway.throttled, gateway.requests)
    # Paced near the limits: the slowest project (5/s, 100 rows) is done close to its ideal 19 s.
    assert gateway.clock.monotonic() <= 19 / 0.9


async def test_bare_429s_find_unequal_limits_without_failing_a_row() -> None:
    """429s that state no limit: every row accepted, under 5 % 429s, the limits found by AIMD."""
    gateway = Gateway(FakeClock(), UNEQUAL, hints=False)
    items = rows(twenty_seconds(UNEQUAL))
    results = await run(items, gateway, rate=RateLimit(50.0))
    assert_all_accepted(results, len(items))
    assert gateway.throttled <= 0.05 * gateway.requests, (gateway.throttled, gateway.requests)


async def test_per_minute_limit_is_one_storm_at_most() -> None:
    """A 600/minute quota: the minute's bucket is spent once, then the pace holds it; no row fails."""
    limits = {pid(1): (600.0, 60.0)}
    gateway = Gateway(FakeClock(), limits)
    items = rows({pid(1): 900})
    results = await run(items, gateway, rate=RateLimit(100.0))
    assert_all_accepted(results, 900)
    assert gateway.throttled <= 0.02 * gateway.requests


@pytest.mark.parametrize("factor", [0.5, 2.0])
async def test_a_quota_that_changes_mid_run_costs_no_row(factor: float) -> None:
    """The quota halves (or doubles) 10 s in: every row accepted, under 5 % 429s."""
    limits = {pid(p): (20.0, 1.0) for p in range(4)}
    gateway = Gateway(FakeClock(), limits, schedule=((10.0, factor),))
    items = rows({p: 500 for p in limits})
    results = await run(items, gateway, rate=RateLimit(60.0))
    assert_all_accepted(results, len(items))
    assert gateway.throttled <= 0.05 * gateway.requests, (gateway.throttled, gateway.requests)


async def test_retry_after_pauses_the_whole_project() -> None:
    """A 429 with Retry-After holds the project's queue, not just the row: no request to it before then."""
    limits = {pid(1): (5.0, 1.0)}
    gateway = Gateway(FakeClock(), limits, retry_after=True, hints=False)
    items = rows({pid(1): 60})
    results = await run(items, gateway, rate=RateLimit(50.0))
    assert_all_accepted(results, 60)
    assert gateway.throttled <= 12, gateway.throttled
    sent = gateway.sent_at[pid(1)]
    first_429 = next(t for t, n in zip(sent, range(len(sent)), strict=False) if n >= 5)
    later = [t for t in sent if first_429 + LATENCY + 1e-6 < t < first_429 + LATENCY + 1.0]
    assert not later, later[:5]


async def test_a_shared_policy_hint_caps_the_credential_not_each_project() -> None:
    """'policy user' 20/s over 8 projects told 10/s each: the credential's ceiling learns it; no row fails."""
    limits: dict[str, tuple[float, float]] = {}
    gateway = Gateway(FakeClock(), limits, shared=(20.0, 1.0))
    items = rows({pid(p): 50 for p in range(8)})
    results = await run(items, gateway, rate=RateLimit(10.0))
    assert_all_accepted(results, 400)
    assert gateway.throttled <= 0.05 * gateway.requests, (gateway.throttled, gateway.requests)
    # 400 rows at 20/s in all: about 20 s, not the 40+ s that eight projects each cut to a crawl would take.
    assert gateway.clock.monotonic() <= 400 / 20 / 0.85


async def test_an_absurd_hint_is_clamped_and_warned_about() -> None:
    """'limit:1,time:1000 hour' does not park the run for weeks: clamped to 0.1/s, a warning, rows done."""
    limits = {pid(1): (5.0, 1.0)}
    stated = "The throttling threshold has been reached: policy api over ratelimit,limit:1,time:1000 hour"
    gateway = Gateway(FakeClock(), limits, stated=stated)
    items = rows({pid(1): 12})
    with structlog.testing.capture_logs() as logs:
        results = await run(items, gateway, rate=RateLimit(50.0))
    assert_all_accepted(results, 12)
    assert any(e["event"] == "bulkops.rate.hint_clamped" for e in logs)
    assert gateway.clock.monotonic() < 3600  # hours at most, never the 1000 hours the hint implies


async def test_a_project_throttled_past_the_timeout_is_given_up_alone() -> None:
    """Only 15 minutes of 429s without a break fail a project (bulkops.throttled); others finish."""
    limits = {pid(1): (0.0001, 1.0)}  # never a token after the first: throttled for good
    gateway = Gateway(FakeClock(), limits, hints=False)
    items = rows({pid(1): 30, pid(2): 30})
    results = await run(items, gateway, rate=RateLimit(10.0))
    by_project = {p: Counter(r.outcome for r in results if r.project_id == p) for p in (pid(1), pid(2))}
    assert by_project[pid(2)] == {Outcome.ACCEPTED: 30}
    assert sum(by_project[pid(1)].values()) == 30
    given_up = [r for r in results if r.project_id == pid(1) and not r.outcome.succeeded]
    assert given_up and all(r.error_code == THROTTLED for r in given_up)
    assert gateway.clock.monotonic() >= 900  # not before the default --throttle-timeout
    assert gateway.clock.monotonic() < 900 + 120


async def test_429s_spend_neither_max_attempts_nor_the_retry_budget() -> None:
    """Rows throttled six times are still accepted (--max-attempts 5), and 60 429s in one project leave the
    retries of another project alone."""
    busy = Reply(503, error_code="ModelArts.0001", error_msg="busy")
    refused = Reply(429, error_code="APIG.0308", error_msg="The throttling threshold has been reached")

    class Noisy(Gateway):
        async def stop(self, project_id: str, instance_id: str) -> Reply:
            self.requests += 1
            seen = self.sent_at.setdefault(instance_id, [])
            seen.append(self.clock.monotonic())
            await self.clock.sleep(LATENCY)
            if project_id == pid(1) and len(seen) <= 6:
                self.throttled += 1
                return refused
            if project_id == pid(2) and len(seen) == 1:
                return busy
            return OK

    gateway = Noisy(FakeClock(), {})
    items = rows({pid(1): 10, pid(2): 15})  # 15 retries in project 2: within its own budget's floor (20)
    results = await run(items, gateway, rate=RateLimit(20.0))
    assert_all_accepted(results, 25)
    assert gateway.throttled == 60  # more 429s than any budget's floor: they spent none of it
    assert all(r.attempts == 7 for r in results if r.project_id == pid(1))


@pytest.mark.parametrize("slow_start", [True, False])
async def test_slow_start_sends_a_few_first_unless_the_rate_is_known(slow_start: bool) -> None:
    """By default a project whose limit is a guess starts with 3 requests in flight, not its whole burst;
    `--no-slow-start` (the rate is the real limit) sends the burst at once."""
    gateway = Gateway(FakeClock(), {})
    items = rows({pid(1): 40})
    results = await run(items, gateway, rate=RateLimit(40.0), slow_start=slow_start)
    assert_all_accepted(results, 40)
    first_flight = sum(1 for t in gateway.sent_at[pid(1)] if t < 0.01)
    assert not any(r.error_code for r in results)
    assert first_flight == (3 if slow_start else 39)  # 39: a burst of 40 with one token held back


async def test_no_429_means_no_learned_rate_in_the_summary() -> None:
    """A run the gateway never throttled reports no learned rate (the end of a slow start is not one)."""
    from bulkops.summary import RunStats

    gateway = Gateway(FakeClock(), {})
    stats = RunStats()
    options = Options(endpoint="http://127.0.0.1:9", rate=RateLimit(20.0))
    async with (
        gateway.clock.autojumping(),
        stop_instances(rows({pid(1): 60}), options, client=gateway, clock=gateway.clock, stats=stats) as r,
    ):
        async for _ in r:
            pass
    assert gateway.throttled == 0
    assert stats.learned_rates == {}
    assert "rates learned" not in stats.render()
