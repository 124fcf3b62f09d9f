"""GCRA, the Generic Cell Rate Algorithm: a token bucket kept as one timestamp, in reservation form.

The Lua script in `scripts` runs exactly this on Redis time; `LocalGcra` runs it in the process on the
engine's clock, as the fallback while Redis is away. Pure and synchronous: every method takes `now`.

A bucket of `rate` per second and `capacity` tokens is held as its theoretical arrival time `tat`: the
time at which the bucket would be full again if nothing more were sent. With the emission interval
`T = 1 / rate` and the tolerance `tau = (capacity - 1) * T`, a request may go at

    s = max(now, tat - tau, hold)        and then  tat = max(tat, s) + T

so `capacity` requests go at once after an idle spell, then one every `T`. A reservation always succeeds:
it returns `s - now`, the wait before sending, and the slot is the caller's (it sleeps locally, it does
not poll). Several buckets (a project's and the credential's) are reserved together by taking the
largest `s` of all and advancing each of them from it.

Why GCRA and not a token bucket with a count and a stamp: one number per bucket, so the state of a
bucket is one field written once per reservation; no floating refill to drift; and the wait falls out of
the same subtraction. A change of rate rescales the backlog (`tat - now`) by the ratio of the intervals,
so what was owed in requests stays owed in requests. A bucket never banks its last `START_MARGIN`
seconds of tokens (one token at least, as the local `adaptive.paced_bucket` holds one back at its start:
see "Pacing" in `ratelimit`): runners share it, so the arrival noise of a burst is theirs together.
"""

from __future__ import annotations

import math


#: Seconds of sending a bucket never banks (at least one token, at most all but one): a burst after an
#: idle spell, from runners that start together, reaches the gateway late and out of order (new
#: connections, processes starting, other runners' requests between), while the gateway's own bucket of
#: the same shape is full; the tokens held back absorb that noise.
START_MARGIN = 0.25


def held_back(interval: float, capacity: float) -> float:
    """Tokens a bucket never banks: `START_MARGIN` worth, at least one, none for a bucket of one."""
    if capacity < 2.0:
        return 0.0
    return min(capacity - 1.0, max(1.0, math.floor(START_MARGIN / interval + 1e-9)))


def fresh_tat(now: float, interval: float, capacity: float) -> float:
    """The `tat` of a new bucket: `held_back` tokens short of full."""
    return now + held_back(interval, capacity) * interval


def rescale(tat: float, now: float, old_interval: float, new_interval: float) -> float:
    """`tat` after the rate changed: the backlog, counted in requests, is kept."""
    if tat <= now or old_interval == new_interval:
        return tat
    return now + (tat - now) * new_interval / old_interval


class LocalGcra:
    """One GCRA bucket in the process (see the module docstring)."""

    __slots__ = ("_capacity", "_hold", "_interval", "_tat")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self._interval = 1.0 / rate
        self._capacity = max(1.0, capacity)
        self._tat = fresh_tat(now, self._interval, self._capacity)
        self._hold = -math.inf

    @property
    def rate(self) -> float:
        """Requests per second, now."""
        return 1.0 / self._interval

    def allowed_at(self, now: float) -> float:
        """The earliest time a request may go (not before `now`)."""
        tau = (self._capacity - 1.0) * self._interval
        return max(now, self._banked_tat(now) - tau, self._hold)

    def _banked_tat(self, now: float) -> float:
        """`tat`, with no more than `capacity - held_back` tokens banked at `now`."""
        interval = self._interval
        return max(self._tat, now + held_back(interval, self._capacity) * interval)

    def commit(self, now: float, at: float) -> None:
        """Record a request sent at `at` (a time `allowed_at(now)` allowed, or later)."""
        self._tat = max(self._banked_tat(now), at) + self._interval

    def reserve(self, now: float) -> float:
        """Take the next slot: the seconds to wait before sending (0.0 when a slot is free now)."""
        at = self.allowed_at(now)
        self.commit(now, at)
        return at - now

    def set_rate(self, now: float, rate: float) -> None:
        """Pace at `rate` from now on; what is owed is kept in requests (see `rescale`)."""
        interval = 1.0 / rate
        self._tat = rescale(self._tat, now, self._interval, interval)
        self._interval = interval

    def hold(self, now: float, until: float) -> None:
        """Send nothing before `until` (a Retry-After), and no burst after it: the bucket restarts empty."""
        if until <= now:
            return
        self._hold = max(self._hold, until)
        self._tat = max(self._tat, until + (self._capacity - 1.0) * self._interval)
