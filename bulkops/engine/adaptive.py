"""The bucket that finds an unknown server limit: a slow start, the gateway's hints, and AIMD on bare 429s.

Pure and synchronous like `ratelimit`: every method takes `now`, so tests drive it with plain numbers.

A 429 is pacing, never failure: the engine puts the throttled row back at the front of its project's queue,
and this bucket decides when that queue may send again. Its goal is the issue's: no row given up, few
429s, and throughput near the server's limit, whatever `--rate` says. Four mechanisms, in the order a run
meets them:

* **Slow start** (as TCP's, after RFC 5681). A project whose limit nobody told us (no `--rates-file`
  entry: `probe=True`) does not fire its whole `--burst` at once into a quota that may be far smaller: it
  may have at most `window` requests unanswered, starting at `INITIAL_WINDOW` (3), and each success widens
  the window by `SLOW_START_GROWTH` (0.5), so the window grows about 1.5x per round trip. The bucket's
  rate and its banked tokens are untouched meanwhile, so a `--rate` that is right costs nothing but the
  first round trips (the held-back tokens are sent as soon as the window allows). Slow start ends at the
  first 429, once the window reaches the bucket's capacity (it no longer binds then), or when a full
  window has waited past `SLOW_START_SPAN` (2 s) from the first request (hung requests hold it).
* **Hints.** A 429 whose message states the limit (`limit:10,time:1 second`, see `hints`) sets the rate at
  once to `HINT_SAFETY` (98 %) of it, with a capacity that cannot exceed the window's allowance (but
  two tokens at least from a limit of 10 per window: a pace below the limit refills the gateway's bucket,
  and one token loses every send that a busy loop delays), and
  drops the banked tokens: what is queued but not yet sent waits for the new pace. Later 429s sent before
  that cut are the same signal and are ignored. A hint is not for good: after `LIFT_AFTER` seconds
  without a 429, the ceiling rises by `LIFT_STEP` (5 %), up to the configured rate, so a quota
  that was raised mid-run is found again (each quiet spell doubles the step: a doubled quota is found
  in about five minutes); a quota that stays costs about one 429 per two minutes.
* **AIMD on bare 429s** (after botocore's adaptive mode, which follows CUBIC, RFC 8312). Without a hint:
  remember `w_max`, the rate really sent at (the smaller of the bucket's rate and the measured send
  rate: a smoothed count per half second, counted from the project's first request, over half seconds in
  which it sent), set the rate to `BETA * w_max`, and drain the bucket. On success the rate follows the
  cubic curve `W(t) = w_max * (1 + (1 - BETA) * ((t - K) / K) ** 3)`, K = `RECOVERY`: fast back towards
  `w_max`, a long flat stretch near it (what keeps 429s rare), then probing beyond, towards the ceiling.
  A 429 is debounced: ignored when its request was sent before the last decrease, or within the hold
  time of the last decrease (max(1 s, 2 intervals), or the hint's window).
* **Bounds.** The rate never goes above the configured rate (the ceiling) nor below `MIN_HINT_RATE`
  (0.1/s); a hint below that is clamped and the caller warns (`hints.ThrottleHint.clamped`).

`paced_bucket` makes the bucket the engine uses for a configured `RateLimit` (see `ratelimit`, "Pacing").
tests/test_ratelimit.py (simulated token-bucket and fixed-window servers, on plain numbers) and
tests/test_throttling.py (the engine against a fake gateway: unknown and unequal limits, bare and hinted
messages, quotas that halve or double) drive it.
"""

from __future__ import annotations

import math

from bulkops.cloud.hints import MIN_HINT_RATE, ThrottleHint
from bulkops.engine.ratelimit import TokenBucket, paced
from bulkops.options import RateLimit

#: Multiplicative decrease: the rate after a bare 429, as a share of the rate that was throttled.
BETA = 0.7
#: Seconds after a decrease at which the cubic curve is back at the throttled rate.
RECOVERY = 12.0
#: Least time between two counted decreases (seconds).
HOLD = 0.5
#: Share of a hinted limit the bucket aims at.
HINT_SAFETY = 0.98
#: Requests a probing project may have unanswered at first.
INITIAL_WINDOW = 3.0
#: How much each success widens the slow-start window (0.5: about 1.5x per round trip).
SLOW_START_GROWTH = 0.5
#: Seconds slow start may hold a full window; after that the bucket alone paces (a server that hangs on
#: requests would otherwise stall a project whose window is all hung requests).
SLOW_START_SPAN = 2.0
#: Seconds a full slow-start window waits before the scheduler asks again (an answer usually comes first:
#: the worker that got it asks at once).
WINDOW_WAIT = 0.01
#: Seconds without a 429 after which a hinted ceiling may rise, and by how much at first (a share of
#: itself); each further quiet spell doubles the step, a 429 starts it again.
LIFT_AFTER = 60.0
LIFT_STEP = 0.05
#: Seconds per bucket of the measured send rate.
_MEASURE_SPAN = 0.5


class AdaptiveBucket(TokenBucket):
    """A token bucket that finds an unknown server limit (see the module docstring).

    `limit.rate` is the ceiling it never exceeds. With `probe`, it starts in slow start.
    """

    def __init__(
        self, limit: RateLimit, now: float, *, start: float | None = None, probe: bool = False
    ) -> None:
        super().__init__(limit, now, start=start)
        self._configured = self._rate
        self._ceiling = self._rate
        self._floor = min(self._ceiling, MIN_HINT_RATE)
        self._window = INITIAL_WINDOW if probe and self._capacity > INITIAL_WINDOW else math.inf
        # While the window holds sends back, the bucket would refill to its whole burst, and the token held
        # back at the start (see `ratelimit`, "Pacing") would be lost: a --rate equal to the server's limit
        # then draws a 429 now and then. So slow start keeps the bucket one token short of it.
        self._full_capacity = self._capacity
        if self._window != math.inf:
            self._capacity -= 1.0
        self._unanswered = 0
        self._w_max: float | None = None
        self._decreased_at = -math.inf
        self._hold_until = -math.inf
        self._hinted = False
        self._quiet_since = now
        self._lift = LIFT_STEP
        # Measured send rate, smoothed over half-second buckets as botocore does.
        self._measured: float | None = None
        self._bucket_start = 0.0  # set by the first take
        self._bucket_count = 0
        self._first_take: float | None = None
        self._taken = 0
        self._ok_total = 0
        self.decreases = 0
        """How many 429s counted as a decrease (for logs and tests)."""

    # -- what it knows ---------------------------------------------------------------------------------

    @property
    def ceiling(self) -> float:
        """The most the rate may reach now: the configured rate, or less once a hint capped it."""
        return self._ceiling

    @property
    def measured_rate(self) -> float | None:
        """The smoothed rate at which tokens were taken lately, None before the first half second."""
        return self._measured

    @property
    def learned(self) -> bool:
        """True once a 429 changed the rate (a hint or a decrease): the rate is the server's, not ours."""
        return self._hinted or self.decreases > 0

    # -- the token path ------------------------------------------------------------------------------------

    def wait_time(self, now: float) -> float:
        """As `TokenBucket.wait_time`, and in slow start a short wait while the window is full."""
        if self._unanswered >= self._window:
            first = self._first_take
            if first is None or now - first < SLOW_START_SPAN:
                return WINDOW_WAIT
            self._end_slow_start()  # answers that never come (hung requests) must not stall it for good
        return super().wait_time(now)

    def take(self, now: float) -> None:
        """Consume one token and count it toward the measured send rate (and the slow-start window)."""
        super().take(now)
        self._unanswered += 1
        self._taken += 1
        if self._bucket_count == 0:  # never 0 again once counting started (reset, then counted at once)
            # The first token: measuring starts here, not when the bucket was made, and the half seconds
            # are counted from here. On a grid of the clock's own half seconds the first one was cut
            # short (a first request at x.45 s left it 0.05 s), and its few requests, divided by a full
            # half second, read as a rate far below the real one (w_max sank to 0.5-0.7 of the limit).
            self._bucket_start = now
            self._first_take = now
        elif now >= self._bucket_start + _MEASURE_SPAN:
            # The rate of the last half second in which it sent. Half seconds with nothing sent are not
            # a slower sending rate: counted as one, they made w_max near zero.
            current = self._bucket_count / _MEASURE_SPAN
            self._measured = current if self._measured is None else 0.8 * current + 0.2 * self._measured
            # Whole spans since the last start (at least one: the division may round 0.99999 down).
            spans = max(1, math.floor((now - self._bucket_start) / _MEASURE_SPAN))
            self._bucket_start += spans * _MEASURE_SPAN
            self._bucket_count = 0
        self._bucket_count += 1

    def _sending_rate(self, now: float) -> float:
        """The rate really sent at lately: the measured rate, or early on the count over the time so far."""
        if self._measured is not None:
            return min(self._rate, self._measured)
        if self._first_take is not None and now - self._first_take >= 0.05:
            return min(self._rate, self._taken / (now - self._first_take))
        return min(self._rate, self._taken / _MEASURE_SPAN) if self._taken else self._rate

    def _set_rate(self, now: float, rate: float) -> None:
        self._refill(now)  # tokens earned so far were earned at the old rate
        self._rate = min(self._ceiling, max(self._floor, rate))

    def _end_slow_start(self) -> None:
        if self._window != math.inf:
            self._window = math.inf
            self._capacity = self._full_capacity

    def _answered(self) -> None:
        if self._unanswered > 0:
            self._unanswered -= 1

    # -- what the answers say ---------------------------------------------------------------------------

    def on_failure(self, now: float) -> None:
        """An answer that says nothing about the rate (5xx, timeout): it only frees its window slot."""
        self._answered()

    def on_success(self, now: float) -> bool:
        """A request was answered without throttling: widen the window, let the rate climb.

        True when the rate (or the window) rose enough to be worth a log line (`bulkops.rate.raised`).
        """
        self._answered()
        self._ok_total += 1
        if self._window != math.inf:
            self._window += SLOW_START_GROWTH
            if self._window >= self._capacity:
                self._end_slow_start()
                return True
            return False
        if self._hinted and now - self._quiet_since >= LIFT_AFTER and self._ceiling < self._configured:
            # A quiet spell under a hinted ceiling: the quota may have been raised; look a little higher.
            self._quiet_since = now
            self._ceiling = min(self._configured, self._ceiling * (1.0 + self._lift))
            self._lift *= 2.0
            self._set_rate(now, self._ceiling)
            return True
        if self._w_max is None or self._rate >= self._ceiling:
            return False
        t = max(0.0, now - self._decreased_at)
        curve = self._w_max * (1.0 + (1.0 - BETA) * ((t - RECOVERY) / RECOVERY) ** 3)
        if curve > self._rate:
            before = self._rate
            self._set_rate(now, curve)
            return self._rate >= before * 1.05 or (self._rate >= self._ceiling > before)
        return False

    def on_throttle(
        self, now: float, hint: ThrottleHint | None = None, *, sent_at: float | None = None
    ) -> bool:
        """React to a 429 received at `now`; True when it changed the rate (not debounced).

        `sent_at` is when the throttled request was sent: a request already in flight at the last decrease
        is part of the signal that decrease answered. `hint` is the project's own limit, when the message
        stated one (a shared policy's hint goes to the credential's bucket instead).
        """
        self._answered()
        first = self._window != math.inf
        self._end_slow_start()  # the limit is found
        self._quiet_since = now
        self._lift = LIFT_STEP
        if hint is not None and self._apply_hint(now, hint):
            return True
        if now < self._hold_until or (sent_at is not None and sent_at < self._decreased_at):
            return False
        if first and self._first_take is not None:
            # The first 429 of a slow start: the window's pace says little (it outran the limit by far).
            # What got through so far is the server's bucket (one second's worth, a gateway's usual
            # window) plus its refill since: per (1 s + the time so far), the limit.
            when = now if sent_at is None else sent_at
            base = self._ok_total / (1.0 + max(0.0, when - self._first_take))
        else:
            base = self._sending_rate(now)
        self._w_max = max(self._floor, base)
        self._set_rate(now, BETA * self._w_max)
        self._drain(now)
        self._decreased_at = now
        hold = max(HOLD, 2.0 / self._rate, hint.window if hint is not None else 0.0)
        self._hold_until = now + hold
        self.decreases += 1
        return True

    def _apply_hint(self, now: float, hint: ThrottleHint) -> bool:
        """Cap the ceiling at the hinted limit; True when that lowered it (news), False when known."""
        cap = min(self._configured, HINT_SAFETY * hint.effective_rate)
        if cap >= self._ceiling * 0.999:
            return False
        self._hinted = True
        self._ceiling = cap
        self._floor = min(self._floor, cap)
        self._refill(now)
        allowance = math.floor(hint.effective_rate * hint.window - cap * hint.window)
        least = 2.0 if hint.limit >= 10 else 1.0
        self._capacity = max(least, min(self._capacity, float(allowance)))
        self._rate = cap
        self._w_max = cap
        self._drain(now)  # what is queued waits for the new pace
        self._decreased_at = now
        self._hold_until = now + max(HOLD, min(hint.window, 2.0 / cap))
        return True


def paced_bucket(limit: RateLimit, now: float, *, adaptive: bool, probe: bool = False) -> TokenBucket:
    """The bucket the engine uses for a configured `limit`: paced at 99 % of its rate, and, when it holds two
    or more tokens, starting with one held back (see "Pacing" in `ratelimit`). `probe` starts an adaptive
    bucket in slow start (its limit is a guess)."""
    shape = paced(limit)
    start = shape.capacity - 1.0 if shape.capacity >= 2.0 else shape.capacity
    if adaptive:
        return AdaptiveBucket(shape, now, start=start, probe=probe)
    return TokenBucket(shape, now, start=start)
