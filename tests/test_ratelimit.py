"""Token buckets and the adaptive limiter, on plain numbers for time: nothing here sleeps."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass

import pytest

from bulkops.engine.adaptive import AdaptiveBucket, paced_bucket
from bulkops.cloud.hints import ThrottleHint, parse_throttle
from bulkops.options import RateLimit
from bulkops.engine.ratelimit import PACING_MARGIN, TokenBucket

# --- TokenBucket -------------------------------------------------------------------------------------------


def test_bucket_starts_full_and_allows_a_burst() -> None:
    """After an idle spell a project may send `burst` requests at once, and no more."""
    bucket = TokenBucket(RateLimit(2.0, burst=5), now=100.0)
    for _ in range(5):
        assert bucket.wait_time(100.0) == 0.0
        bucket.take(100.0)
    assert bucket.wait_time(100.0) == pytest.approx(0.5)


def test_bucket_refills_at_rate_and_never_above_capacity() -> None:
    """Tokens come back at `rate` per second and an hour of idleness banks no more than the burst."""
    bucket = TokenBucket(RateLimit(4.0), now=0.0)
    for _ in range(4):
        bucket.take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(0.25)
    assert bucket.wait_time(0.125) == pytest.approx(0.125)
    assert bucket.wait_time(0.25) == 0.0
    assert bucket.tokens(3600.0) == 4.0


def test_bucket_wait_is_exact_at_the_deadline_despite_float_rounding() -> None:
    """Waiting exactly the advertised time always finds a token (no endless tiny waits)."""
    bucket = TokenBucket(RateLimit(3.0, burst=1), now=0.0)
    now = 0.0
    for _ in range(1000):
        now += bucket.wait_time(now)
        assert bucket.wait_time(now) == 0.0
        bucket.take(now)
    assert now == pytest.approx(999 / 3.0)


def test_bucket_take_without_token_goes_into_debt() -> None:
    """A caller that takes without waiting is slowed down later instead of exceeding the rate."""
    bucket = TokenBucket(RateLimit(1.0, burst=1), now=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(2.0)


def test_bucket_ignores_time_going_backwards() -> None:
    """An earlier `now` than the last one adds no tokens and removes none."""
    bucket = TokenBucket(RateLimit(1.0, burst=1), now=10.0)
    bucket.take(10.0)
    assert bucket.wait_time(5.0) == pytest.approx(1.0)
    assert bucket.wait_time(11.0) == 0.0


def test_bucket_with_fractional_rate_has_one_token_capacity() -> None:
    """A rate below one per second still sends one request, then waits 1/rate."""
    bucket = TokenBucket(RateLimit(0.25), now=0.0)
    assert bucket.capacity == 1.0
    bucket.take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(4.0)


# --- parse_throttle ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        (
            "The throttling threshold has been reached: policy user over ratelimit,limit:10,time:1 second",
            ThrottleHint(10, 1.0, "user"),
        ),
        ("policy api over ratelimit, limit: 600, time: 1 minute", ThrottleHint(600, 60.0, "api")),
        ("limit:100,time:60 second", ThrottleHint(100, 60.0)),
        ("limit:100,time:60 seconds", ThrottleHint(100, 60.0)),
        ("limit:5000,time:1 hour", ThrottleHint(5000, 3600.0)),
        ("LIMIT:3 , TIME:2 Minutes", ThrottleHint(3, 120.0)),
        ("limit:20,time:1min", ThrottleHint(20, 60.0)),
        ("limit:7,time:second", ThrottleHint(7, 1.0)),
        ("policy app over ratelimit,limit:1,time:500 ms", ThrottleHint(1, 0.5, "app")),
    ],
)
def test_parse_throttle_reads_the_gateway_limit(message: str, hint: ThrottleHint) -> None:
    """The limit and window in an APIG.0308 message are read however they are spaced or spelled."""
    assert parse_throttle(message) == hint


@pytest.mark.parametrize(
    "message",
    [None, "", "Too many requests", "limit:10", "limit:0,time:1 second", "limit:10,time:1 fortnight"],
)
def test_parse_throttle_gives_none_without_a_usable_limit(message: str | None) -> None:
    """A 429 whose message states no limit leaves the limiter to find one by itself."""
    assert parse_throttle(message) is None


# --- AdaptiveBucket ----------------------------------------------------------------------------------------


def test_adaptive_starts_at_the_configured_rate() -> None:
    """Without a 429 the adaptive bucket behaves exactly like the configured one."""
    bucket = AdaptiveBucket(RateLimit(10.0), now=0.0)
    bucket.on_success(5.0)
    assert bucket.rate == 10.0
    assert bucket.ceiling == 10.0
    assert bucket.capacity == 10.0


def test_throttle_decreases_rate_and_drains_tokens() -> None:
    """A 429 cuts the rate by 30% and makes the next send wait a full interval."""
    bucket = AdaptiveBucket(RateLimit(10.0), now=0.0)
    assert bucket.on_throttle(0.0)
    assert bucket.rate == pytest.approx(7.0)
    assert bucket.wait_time(0.0) == pytest.approx(1 / 7.0)


def test_throttles_of_one_flight_count_once() -> None:
    """Many 429s for requests that were in flight together lower the rate once, not once each."""
    bucket = AdaptiveBucket(RateLimit(10.0), now=0.0)
    assert bucket.on_throttle(1.0, sent_at=0.9)
    assert not bucket.on_throttle(1.01, sent_at=0.95)
    assert not bucket.on_throttle(1.2)  # within the hold time
    assert not bucket.on_throttle(3.0, sent_at=0.99)  # sent before the decrease, arrived late
    assert bucket.rate == pytest.approx(7.0)
    assert bucket.decreases == 1
    assert bucket.on_throttle(3.0, sent_at=2.0)  # a new signal
    assert bucket.rate == pytest.approx(4.9)


def test_rate_recovers_along_the_curve_and_stops_at_ceiling() -> None:
    """After a 429 successes bring the rate back to where it was, then gently past it, never past the
    configured rate."""
    bucket = AdaptiveBucket(RateLimit(10.0), now=0.0)
    bucket.on_throttle(0.0)
    bucket.on_success(6.0)
    assert 7.0 < bucket.rate < 10.0
    bucket.on_success(12.0)
    assert bucket.rate == pytest.approx(10.0)
    bucket.on_success(1000.0)
    assert bucket.rate == 10.0


def test_rate_never_climbs_without_successes() -> None:
    """Time alone does not restore the rate: only answered requests do."""
    bucket = AdaptiveBucket(RateLimit(10.0), now=0.0)
    bucket.on_throttle(0.0)
    assert bucket.wait_time(100.0) == 0.0
    assert bucket.rate == pytest.approx(7.0)


def test_rate_has_a_floor() -> None:
    """Endless 429s slow a project down to a trickle, never to a halt."""
    bucket = AdaptiveBucket(RateLimit(6.4), now=0.0)
    for second in range(100):
        bucket.on_throttle(float(second))
    assert bucket.rate == pytest.approx(0.1)


def test_decrease_uses_the_measured_rate_when_sending_slower_than_allowed() -> None:
    """A project held back by concurrency backs off from what it really sent, not from its ceiling."""
    bucket = AdaptiveBucket(RateLimit(100.0), now=0.0)
    now = 0.0
    while now < 5.0:  # 4 requests per second, far below 100/s
        bucket.take(now)
        now += 0.25
    assert bucket.measured_rate == pytest.approx(4.0)
    bucket.on_throttle(now)
    assert bucket.rate == pytest.approx(2.8)


def test_measured_rate_is_not_cut_short_by_a_late_first_request() -> None:
    """A project whose first request comes late in a clock half second is measured at its real rate."""
    bucket = AdaptiveBucket(RateLimit(100.0), now=0.0)
    now = 0.45  # 0.05 s before a half-second boundary of the clock
    while now < 1.46:  # 30 requests per second
        bucket.take(now)
        now += 1 / 30
    assert bucket.measured_rate == pytest.approx(30.0, rel=0.07)
    bucket.on_throttle(now)
    assert bucket.rate == pytest.approx(0.7 * 30.0, rel=0.07)


def test_hint_caps_rate_and_burst() -> None:
    """A 429 that states 'limit:600,time:1 minute' keeps the project under 600 in any minute from then on."""
    bucket = AdaptiveBucket(RateLimit(50.0), now=0.0)
    hint = ThrottleHint(600, 60.0)
    bucket.on_throttle(0.0, hint)
    assert bucket.ceiling == pytest.approx(9.8)
    assert bucket.capacity == 12.0
    assert bucket.capacity + bucket.ceiling * hint.window <= hint.limit
    bucket.on_success(59.0)
    assert bucket.rate == pytest.approx(9.8)


def test_hinted_ceiling_rises_after_quiet_minutes_to_find_a_raised_quota() -> None:
    """After a minute without 429s the hinted ceiling rises, faster each quiet minute, never past --rate."""
    bucket = AdaptiveBucket(RateLimit(50.0), now=0.0)
    bucket.on_throttle(0.0, ThrottleHint(10, 1.0))
    ceilings = []
    for minute in range(1, 8):
        bucket.on_success(60.0 * minute)
        ceilings.append(bucket.ceiling)
    assert ceilings[0] == pytest.approx(9.8 * 1.05)
    assert all(b > a for a, b in itertools.pairwise(ceilings[:5]))
    assert ceilings[4] >= 2 * 9.8  # a doubled quota is reached within five quiet minutes
    assert max(ceilings) == pytest.approx(50.0)
    bucket.on_throttle(500.0, ThrottleHint(10, 1.0))  # the quota did not change: back to the hint
    assert bucket.rate == pytest.approx(9.8)


def test_hint_with_a_minute_window_holds_decreases_for_the_window() -> None:
    """The rest of a spent minute window answers 429 to everything; that is one decrease, not sixty."""
    bucket = AdaptiveBucket(RateLimit(50.0), now=0.0)
    hint = ThrottleHint(600, 60.0)
    for second in range(60):
        bucket.on_throttle(float(second), hint)
    assert bucket.decreases == 1


def test_small_hinted_limit_keeps_a_token_or_two() -> None:
    """A limit of 10 per second leaves a bucket of two tokens at 9.8/s (one would lose every delayed send);
    a limit of 5 leaves one, never zero."""
    bucket = AdaptiveBucket(RateLimit(30.0), now=0.0)
    bucket.on_throttle(0.0, ThrottleHint(10, 1.0))
    assert bucket.capacity == 2.0
    assert bucket.ceiling == pytest.approx(9.8)
    small = AdaptiveBucket(RateLimit(30.0), now=0.0)
    small.on_throttle(0.0, ThrottleHint(5, 1.0))
    assert small.capacity == 1.0


# --- convergence simulation -------------------------------------------------------------------------------


class _TokenBucketServer:
    """A server admitting `limit` requests per second with a burst of `limit` (a token bucket)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.tokens = limit
        self.stamp = 0.0

    def admit(self, now: float) -> bool:
        self.tokens = min(self.limit, self.tokens + (now - self.stamp) * self.limit)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _FixedWindowServer:
    """A server admitting `limit` requests per calendar second, the gateway's `time:1 second` policy."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.window = -1
        self.count = 0

    def admit(self, now: float) -> bool:
        window = math.floor(now)
        if window != self.window:
            self.window, self.count = window, 0
        if self.count < self.limit:
            self.count += 1
            return True
        return False


@dataclass
class _Run:
    ok: int
    throttled: int
    duration: float

    @property
    def goodput(self) -> float:
        return self.ok / self.duration

    @property
    def throttled_share(self) -> float:
        return self.throttled / (self.ok + self.throttled)


def _simulate(
    server: _TokenBucketServer | _FixedWindowServer,
    configured: float,
    *,
    duration: float = 600.0,
    rtt: tuple[float, float] = (0.03, 0.2),
    seed: int = 1,
    hint: ThrottleHint | None = None,
) -> _Run:
    """An endless backlog for one project, sent as fast as the adaptive bucket allows; each reply arrives
    one round trip later and is fed back to the bucket, as the engine does."""
    rng = random.Random(seed)
    bucket = AdaptiveBucket(RateLimit(configured), now=0.0)
    replies: list[tuple[float, int, float, bool]] = []
    now, ok, throttled, seq = 0.0, 0, 0, 0
    while now < duration:
        send_at = now + bucket.wait_time(now)
        if replies and replies[0][0] <= send_at:
            now, _, sent_at, good = heapq.heappop(replies)
            if good:
                bucket.on_success(now)
            else:
                bucket.on_throttle(now, hint, sent_at=sent_at)
            continue
        now = send_at
        bucket.take(now)
        good = server.admit(now)
        ok, throttled = ok + good, throttled + (not good)
        seq += 1
        heapq.heappush(replies, (now + rng.uniform(*rtt), seq, now, good))
    return _Run(ok, throttled, duration)


@pytest.mark.parametrize("server_kind", [_TokenBucketServer, _FixedWindowServer])
@pytest.mark.parametrize("limit", [5, 10, 25, 50])
def test_adaptive_finds_an_unknown_limit_three_times_below_the_configured_rate(
    server_kind: type[_TokenBucketServer | _FixedWindowServer], limit: int
) -> None:
    """With the rate set to 3x a server limit it does not know, a long run gets >= 90% of the limit
    through with <= 3% of requests answered 429."""
    for seed in (1, 2, 3):
        run = _simulate(server_kind(limit), 3.0 * limit, seed=seed)
        assert run.goodput >= 0.90 * limit, (seed, run.goodput)
        assert run.throttled_share <= 0.03, (seed, run.throttled_share)


@pytest.mark.parametrize("server_kind", [_TokenBucketServer, _FixedWindowServer])
@pytest.mark.parametrize("limit", [5, 10, 25, 50])
def test_adaptive_copes_with_slow_round_trips(
    server_kind: type[_TokenBucketServer | _FixedWindowServer], limit: int
) -> None:
    """With replies taking 0.5-1.5 s (many requests in flight per 429), it still gets >= 85% through with
    <= 5% answered 429."""
    run = _simulate(server_kind(limit), 3.0 * limit, rtt=(0.5, 1.5))
    assert run.goodput >= 0.85 * limit
    assert run.throttled_share <= 0.05


@pytest.mark.parametrize("limit", [5, 10, 25, 50])
def test_adaptive_uses_a_stated_limit(limit: int) -> None:
    """When the 429 states the limit, the run settles at 98% of it with almost no further 429s."""
    run = _simulate(_FixedWindowServer(limit), 3.0 * limit, hint=ThrottleHint(limit, 1.0))
    assert run.goodput >= 0.93 * limit
    assert run.throttled_share <= 0.01


def test_adaptive_never_exceeds_its_ceiling_against_a_generous_server() -> None:
    """A server with room to spare sees exactly the configured rate, never more."""
    run = _simulate(_TokenBucketServer(1000.0), 20.0, duration=60.0)
    assert run.throttled == 0
    assert run.ok <= 20 + 20 * 60.0 + 1


@pytest.mark.parametrize("adaptive", [False, True])
def test_paced_bucket_never_outruns_a_server_bucket_of_the_same_shape(adaptive: bool) -> None:
    """The engine's bucket holds one token back and paces at 99 %: a server bucket of the configured shape,
    started when the first request arrives, always has a token, even for arrivals up to one interval early."""
    limit = RateLimit(25.0)
    client = paced_bucket(limit, 0.0, adaptive=adaptive)
    assert client.capacity == 25.0
    assert client.tokens(0.0) == 24.0
    assert client.rate == pytest.approx(25.0 * (1 - PACING_MARGIN))
    server = TokenBucket(limit, 0.0)
    now = 0.0
    for n in range(2000):
        now += client.wait_time(now)
        client.take(now)
        early = 0.0 if n == 0 else 0.9 / limit.rate  # arrival noise: this request lands early
        arrival = max(0.0, now - early)
        assert server.wait_time(arrival) == 0.0, n
        server.take(arrival)


@pytest.mark.parametrize("adaptive", [False, True])
def test_paced_bucket_anchors_at_the_first_answer_when_the_first_sends_arrive_late(adaptive: bool) -> None:
    """The first requests of a run open their connections while the client is still starting up (reading
    its input, connecting): they reach the server 100 ms after their tokens were taken, later ones 2 ms
    after. The server's bucket starts at that late first arrival; the first answer anchors the client's
    refill there, so the held-back token is still in hand when the burst is spent (without the anchor, the
    client is 2.5 tokens ahead of the server and request 25 or so draws a 429)."""
    limit = RateLimit(25.0)
    client = paced_bucket(limit, 0.0, adaptive=adaptive)
    server: TokenBucket | None = None
    answers: list[float] = []
    first_answer = math.inf
    now = 0.0
    for n in range(300):
        now += client.wait_time(now)
        while answers and answers[0] <= now:  # answers that came back before this send
            client.answered(heapq.heappop(answers))
            now += client.wait_time(now)
        client.take(now)
        arrival = now + (0.1 if now < first_answer else 0.002)  # a cold connection until an answer came
        if server is None:
            server = TokenBucket(limit, arrival)
        assert server.wait_time(arrival) == 0.0, n
        server.take(arrival)
        first_answer = min(first_answer, arrival + 0.001)  # answered at once
        heapq.heappush(answers, arrival + 0.001)


def test_paced_bucket_of_one_token_starts_full() -> None:
    """A bucket of one token cannot hold one back: it starts full and is only paced."""
    bucket = paced_bucket(RateLimit(10.0, 1), 0.0, adaptive=False)
    assert bucket.wait_time(0.0) == 0.0
    bucket.take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(1 / (10.0 * (1 - PACING_MARGIN)))


def test_first_throttle_after_a_late_first_send_does_not_sink_the_rate() -> None:
    """A project whose first row goes out a while after its bucket was made backs off from what it sent."""
    bucket = AdaptiveBucket(RateLimit(75.0), now=0.0)
    now = 0.7  # the first send, in a later half second than the bucket's creation
    for _ in range(10):
        bucket.take(now)
        now += 0.02
    bucket.on_throttle(now)  # the first answers come back throttled
    assert bucket.rate >= 0.7 * 40


def test_idle_half_seconds_do_not_count_as_a_slow_sending_rate() -> None:
    """A project that paused (nothing to send) and then draws a 429 backs off from its sending rate."""
    bucket = AdaptiveBucket(RateLimit(100.0), now=0.0)
    now = 0.0
    while now < 2.0:  # 20 per second
        bucket.take(now)
        now += 0.05
    now = 10.0  # idle for 8 seconds, then it sends again
    for _ in range(10):
        bucket.take(now)
        now += 0.05
    bucket.on_throttle(now)
    assert bucket.rate >= 0.7 * 15
