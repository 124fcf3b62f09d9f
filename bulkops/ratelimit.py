"""Token buckets, one per project (and optionally one for the whole run), adaptive on 429.

Everything here is pure and synchronous: every method takes the current time `now` (seconds on the
engine's monotonic `Clock`), so tests drive it with plain numbers and never sleep.

    TokenBucket     `rate` tokens/s, at most `capacity` banked; starts full; refills lazily
    AdaptiveBucket  a TokenBucket whose rate backs off on 429 and climbs back (CUBIC-style AIMD)
    ThrottleHint    what the gateway's 429 message says: `limit` requests per `window` seconds
    parse_throttle  "…policy user over ratelimit,limit:10,time:1 second" -> ThrottleHint(10, 1.0, "user")

The adaptive algorithm (after botocore's adaptive retry mode, which follows CUBIC, RFC 8312):

* The configured rate is the ceiling; the bucket starts there and never goes above it.
* On a 429 (`on_throttle`), unless it is debounced: remember `w_max`, the rate we were really sending at
  (the smaller of the bucket's rate and the measured send rate: a smoothed count per half second,
  half seconds counted from the project's first request, over those in which it sent), set the rate
  to `BETA * w_max` (BETA = 0.7), and drain the bucket so that the next send waits a full interval.
* On a success (`on_success`), the rate follows the cubic curve of the time `t` since that decrease,
  scaled to `w_max` so that it behaves the same at 5/s and 500/s:
  `W(t) = w_max * (1 + (1 - BETA) * ((t - K) / K) ** 3)`. It starts at `BETA * w_max`, climbs fast and
  then flattens out as it nears `w_max` at `t = K` (K = RECOVERY = 12 s), lingers there, and only then
  probes beyond, ever faster, towards the ceiling. Time spent near the last known limit is what keeps
  the send rate high; the long flat stretch is what keeps 429s rare.
* Debounce: 429s of requests that were in flight together are one signal. A throttle is ignored when the
  request was sent before the last decrease (`sent_at`, when the caller knows it), or when it comes within
  the hold time of the last decrease: max(1 s, 2 intervals at the new rate), or the hint's window. One
  second covers the rest of the gateway's usual 1-second window, whose count is already spent.
* A hint (`ThrottleHint`, parsed from the 429's message) caps the ceiling for good at
  `HINT_SAFETY * limit / window` (95 %), and the capacity at `max(1, limit - cap * window)`, so that a full
  bucket plus its refill never sends more in one window than the window permits (exactly so when
  `limit >= 20`; below that a bucket of one token can exceed it by one, and the adaptive decrease is the
  backstop). Policies named "user" or "app" are shared by every project of a credential: the engine
  should apply such hints to its global bucket too.

Pacing (`paced_bucket`, what the engine uses). A client that sends at exactly a server's rate, from a bucket
of the server's shape, sends every request the instant the server's bucket earns its token; the tiniest
scheduling or network noise then lands a request a hair early, and it gets a 429. So the engine keeps a
margin: it paces a project at `1 - PACING_MARGIN` (99 %) of its `--rate`, and starts a bucket of two or
more tokens with one token held back (capacity - 1), and keeps it back until its first request: a bucket
given `start` earns nothing before its first `take`, so a project whose first request waits behind others
still starts one token short. The held-back token absorbs up to one interval of arrival noise at the
start, and the 1 % margin makes that slack grow by a hundredth of an interval per request, so arrivals
never outrun a server bucket of the same shape. The price is about 1 % of
throughput plus one interval per project, well inside the 2 % the benchmarks allow
(`python -m benchmarks rate`). `TokenBucket` and `AdaptiveBucket` themselves do exactly what their
`RateLimit` says; the margin is applied where the engine makes its buckets.

tests/test_ratelimit.py simulates a server limit unknown to the client (token-bucket and fixed-window
servers, 5 to 50 requests/s, configured rate 3x the limit) and checks the long-run throughput and 429 share.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from bulkops.options import RateLimit

#: Multiplicative decrease: the rate after a 429, as a share of the rate that was throttled.
BETA = 0.7
#: Seconds after a decrease at which the cubic curve is back at the throttled rate.
RECOVERY = 12.0
#: Least time between two counted decreases (seconds).
HOLD = 0.5
#: Share of a hinted limit the bucket aims at.
HINT_SAFETY = 0.95
#: Seconds per bucket of the measured send rate.
_MEASURE_SPAN = 0.5
#: Tolerance for float rounding: a bucket this close to a whole token has one.
_EPSILON = 1e-9
#: Share of a configured rate the engine keeps in hand, so that it never outruns a server bucket of the
#: same rate (see "Pacing" in the module docstring).
PACING_MARGIN = 0.01


class TokenBucket:
    """`limit.rate` tokens per second, at most `limit.capacity` banked; starts full, or with `start` tokens.

    The bucket refills lazily from the time elapsed between calls; `now` must not go backwards (an earlier
    `now` is treated as no time passing). `take` on an empty bucket is allowed and leaves a debt that later
    refills pay back, so a caller that ignores `wait_time` slows down instead of breaking the rate.
    """

    def __init__(self, limit: RateLimit, now: float, *, start: float | None = None) -> None:
        self._rate = float(limit.rate)
        self._capacity = float(limit.capacity)
        self._tokens = self._capacity if start is None else min(self._capacity, float(start))
        self._stamp = now
        # With `start`, the bucket earns nothing until its first `take`: the tokens held back stay held
        # back however long the first request waits (e.g. behind other projects' queues).
        self._fresh = start is not None

    @property
    def rate(self) -> float:
        """Tokens added per second, now."""
        return self._rate

    @property
    def capacity(self) -> float:
        """Most tokens the bucket holds (the burst after an idle spell)."""
        return self._capacity

    def tokens(self, now: float) -> float:
        """Tokens available at `now` (negative while a debt is being paid back)."""
        self._refill(now)
        return self._tokens

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            if not self._fresh:
                self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now

    def wait_time(self, now: float) -> float:
        """0.0 if a token is available at `now`, else the seconds until one will be."""
        self._refill(now)
        missing = 1.0 - self._tokens
        if missing <= _EPSILON:
            return 0.0
        return missing / self._rate

    def take(self, now: float) -> None:
        """Consume one token (call when `wait_time(now)` is 0; otherwise the bucket goes into debt)."""
        self._refill(now)
        self._fresh = False
        self._tokens -= 1.0


@dataclass(frozen=True, slots=True)
class ThrottleHint:
    """The gateway's limit as its 429 message states it: `limit` requests per `window` seconds.

    `policy` is the word before "over ratelimit" ("user", "api", "app", ...), when the message names one.
    """

    limit: int
    window: float
    policy: str | None = None

    @property
    def rate(self) -> float:
        """The limit in requests per second."""
        return self.limit / self.window


_UNITS = {
    "ms": 0.001,
    "millisecond": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_LIMIT_RE = re.compile(
    r"limit\s*[:=]\s*(?P<limit>\d+)\s*[,;]?\s*time\s*[:=]\s*(?P<n>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)",
    re.IGNORECASE,
)
_POLICY_RE = re.compile(r"policy\s+(?P<policy>[\w-]+)\s+over\s+ratelimit", re.IGNORECASE)


def parse_throttle(error_msg: str | None) -> ThrottleHint | None:
    """The limit a throttling message states (`...,limit:10,time:1 second`), or None when it states none.

    Tolerant of spacing, case, plurals and abbreviations (`1 minute`, `60 seconds`, `1min`, `2 hours`).
    """
    if not error_msg:
        return None
    match = _LIMIT_RE.search(error_msg)
    if match is None:
        return None
    unit = match["unit"].lower()
    seconds_per_unit = _UNITS.get(unit) or _UNITS.get(unit.removesuffix("s"))
    limit = int(match["limit"])
    amount = float(match["n"]) if match["n"] else 1.0
    if seconds_per_unit is None or limit <= 0 or amount <= 0:
        return None
    policy = _POLICY_RE.search(error_msg)
    return ThrottleHint(limit, amount * seconds_per_unit, policy["policy"].lower() if policy else None)


class AdaptiveBucket(TokenBucket):
    """A token bucket that finds an unknown server limit: backs off on 429, climbs back on success.

    See the module docstring for the algorithm. `limit.rate` is the ceiling it never exceeds.
    """

    def __init__(self, limit: RateLimit, now: float, *, start: float | None = None) -> None:
        super().__init__(limit, now, start=start)
        self._ceiling = self._rate
        self._floor = min(self._ceiling, max(self._ceiling / 64, 0.1))
        self._w_max: float | None = None
        self._decreased_at = -math.inf
        self._hold_until = -math.inf
        # Measured send rate, smoothed over half-second buckets as botocore does.
        self._measured: float | None = None
        self._bucket_start = 0.0  # set by the first take
        self._bucket_count = 0
        self.decreases = 0
        """How many 429s counted as a decrease (for logs and tests)."""

    @property
    def ceiling(self) -> float:
        """The most the rate may reach: the configured rate, or less once a hint capped it."""
        return self._ceiling

    @property
    def measured_rate(self) -> float | None:
        """The smoothed rate at which tokens were taken lately, None before the first half second."""
        return self._measured

    def take(self, now: float) -> None:
        """Consume one token and count it toward the measured send rate."""
        super().take(now)
        if self._bucket_count == 0:  # never 0 again once counting started (reset, then counted at once)
            # The first token: measuring starts here, not when the bucket was made, and the half seconds
            # are counted from here. On a grid of the clock's own half seconds the first one was cut
            # short (a first request at x.45 s left it 0.05 s), and its few requests, divided by a full
            # half second, read as a rate far below the real one: w_max, and the rate with it, sank to
            # 0.5-0.7 of the limit at the first 429 (seen in benchmarks/: adaptive-3x at 0.75-0.83 of the
            # ideal in one run of five to ten).
            self._bucket_start = now
        elif now >= self._bucket_start + _MEASURE_SPAN:
            # The rate of the last half second in which it sent. Half seconds with nothing sent (before
            # the project's first row, or while it had no row to send) are not a slower sending rate:
            # counted as one, they made w_max near zero, and one 429 then sank the project to its floor
            # (seen in benchmarks/: four projects of eight at 1-2 rows/s for a minute).
            current = self._bucket_count / _MEASURE_SPAN
            self._measured = current if self._measured is None else 0.8 * current + 0.2 * self._measured
            # Whole spans since the last start (at least one: the division may round 0.99999 down).
            spans = max(1, math.floor((now - self._bucket_start) / _MEASURE_SPAN))
            self._bucket_start += spans * _MEASURE_SPAN
            self._bucket_count = 0
        self._bucket_count += 1

    def _set_rate(self, now: float, rate: float) -> None:
        self._refill(now)  # tokens earned so far were earned at the old rate
        self._rate = min(self._ceiling, max(self._floor, rate))

    def on_throttle(
        self, now: float, hint: ThrottleHint | None = None, *, sent_at: float | None = None
    ) -> bool:
        """React to a 429 received at `now`; True when it counted as a decrease (not debounced).

        `sent_at` is when the throttled request was sent: a request already in flight at the last decrease
        is part of the signal that decrease answered. `hint` is `parse_throttle(reply.error_msg)`.
        """
        if hint is not None:
            self._apply_hint(now, hint)
        if now < self._hold_until or (sent_at is not None and sent_at < self._decreased_at):
            return False
        sending = self._rate if self._measured is None else min(self._rate, self._measured)
        self._w_max = max(self._floor, sending)
        self._set_rate(now, BETA * self._w_max)
        self._tokens = min(self._tokens, 0.0)
        self._decreased_at = now
        hold = max(HOLD, 2.0 / self._rate, hint.window if hint is not None else 0.0)
        self._hold_until = now + hold
        self.decreases += 1
        return True

    def _apply_hint(self, now: float, hint: ThrottleHint) -> None:
        cap = HINT_SAFETY * hint.rate
        if cap >= self._ceiling:
            return
        self._ceiling = cap
        self._floor = min(self._floor, cap)
        self._refill(now)
        self._capacity = max(1.0, min(self._capacity, math.floor(hint.limit - cap * hint.window)))
        self._tokens = min(self._tokens, self._capacity)
        self._rate = min(self._rate, cap)
        if self._w_max is not None:
            self._w_max = min(self._w_max, cap)

    def on_success(self, now: float) -> None:
        """A request succeeded at `now`: let the rate climb along the cubic curve (never down, never past
        the ceiling)."""
        if self._w_max is None or self._rate >= self._ceiling:
            return
        t = max(0.0, now - self._decreased_at)
        curve = self._w_max * (1.0 + (1.0 - BETA) * ((t - RECOVERY) / RECOVERY) ** 3)
        if curve > self._rate:
            self._set_rate(now, curve)


def paced(limit: RateLimit) -> RateLimit:
    """`limit` a hair slower: its rate times `1 - PACING_MARGIN`, the same capacity."""
    return RateLimit(limit.rate * (1.0 - PACING_MARGIN), limit.capacity)


def paced_bucket(limit: RateLimit, now: float, *, adaptive: bool) -> TokenBucket:
    """The bucket the engine uses for a configured `limit`: paced at 99 % of its rate, and, when it holds two
    or more tokens, starting with one held back (see "Pacing" in the module docstring)."""
    shape = paced(limit)
    start = shape.capacity - 1.0 if shape.capacity >= 2.0 else shape.capacity
    if adaptive:
        return AdaptiveBucket(shape, now, start=start)
    return TokenBucket(shape, now, start=start)
