"""Token buckets: the pacing every request goes through, one per project and optionally one per credential.

Everything here is pure and synchronous: every method takes the current time `now` (seconds on the
engine's monotonic `Clock`), so tests drive it with plain numbers and never sleep. The bucket that learns
from 429s is `adaptive.AdaptiveBucket`, a subclass; what a 429's message says is `hints`.

    TokenBucket     `rate` tokens/s, at most `capacity` banked; starts full; refills lazily;
                    `hold(now, until)` parks it (a Retry-After applies to the whole project, not one row)
    paced           a `RateLimit` a hair slower (see "Pacing")

Pacing (`adaptive.paced_bucket`, what the engine uses). A client that sends at exactly a server's rate, from
a bucket of the server's shape, sends every request the instant the server's bucket earns its token; the
tiniest scheduling or network noise then lands a request a hair early, and it gets a 429. So the engine
keeps a margin: it paces a project at `1 - PACING_MARGIN` (99 %) of its `--rate`, and starts a bucket of two
or more tokens with one token held back (capacity - 1), and keeps it back until its first request: a
bucket given `start` earns nothing before its first `take`, so a project whose first request waits behind
others still starts one token short; and the first answer (`answered`) drops what it earned before the
server could have seen a request (a run's first connections open while the client still starts up: its
first requests can reach the server tens of ms late, more than one interval at 25/s). The held-back token
absorbs up to one interval of arrival noise at the start, and the 1 % margin makes that slack grow by a
hundredth of an interval per request, so arrivals never outrun a server bucket of the same shape. The price
is about 1 % of throughput plus one interval and one first round trip per project, inside the 2 % the
benchmarks allow (`python -m benchmarks rate`).
"""

from __future__ import annotations

import math

from bulkops.options import RateLimit

#: Tolerance for float rounding: a bucket this close to a whole token has one.
EPSILON = 1e-9
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
        # Until the first answer, tokens taken from `start` are counted: the server's bucket starts at its
        # first request's arrival, which may come well after the first `take` (see `answered`).
        self._unanchored: float | None = None if start is None else self._tokens
        self._held_until = -math.inf

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
        if now < self._held_until:
            return self._held_until - now
        self._refill(now)
        missing = 1.0 - self._tokens
        if missing <= EPSILON:
            return 0.0
        return missing / self._rate

    def take(self, now: float) -> None:
        """Consume one token (call when `wait_time(now)` is 0; otherwise the bucket goes into debt)."""
        self._refill(now)
        self._fresh = False
        self._tokens -= 1.0
        if self._unanchored is not None:
            self._unanchored -= 1.0

    def answered(self, now: float) -> None:
        """An answer came back: call for every answer (cheap after the first).

        The first answer anchors the refill. A server's bucket starts when its first request arrives, and
        a bucket given `start` started earning at its first `take`: when that first request reached the
        server late (its connection opened while the client was still starting up: tens of ms), the two
        clocks are that much apart, more than the one held-back token absorbs at a high rate. The answer
        proves the server's bucket exists, so the tokens earned before it are dropped: the bucket holds
        what `start` left after the takes so far (a debt if more went out), and earns from now on.
        """
        left = self._unanchored
        if left is None:
            return
        self._unanchored = None
        self._refill(now)
        self._tokens = min(self._tokens, left)

    def _drain(self, now: float) -> None:
        """Drop the banked tokens (they start earning again from now)."""
        self._refill(now)
        self._fresh = False
        self._tokens = min(self._tokens, 0.0)

    def hold(self, now: float, until: float) -> None:
        """Send nothing before `until` (a `Retry-After`), and start again from an empty bucket then.

        Tokens earned while held are dropped: the server asked for a pause, not for a burst after it.
        """
        if until <= now:
            return
        self._drain(now)
        self._stamp = max(self._stamp, until)
        self._held_until = max(self._held_until, until)


def paced(limit: RateLimit) -> RateLimit:
    """`limit` a hair slower: its rate times `1 - PACING_MARGIN`, the same capacity."""
    return RateLimit(limit.rate * (1.0 - PACING_MARGIN), limit.capacity)
