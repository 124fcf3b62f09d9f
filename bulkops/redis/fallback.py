"""What a runner remembers of the shared limits, and the local buckets it paces with while Redis is away.

    SharedView   one bucket as Redis last described it: the lowest configured rate (paced), the learned
                 rate, the live runners sharing it
    Fallback     local GCRA buckets (`gcra.LocalGcra`), one per project and one for the credential ("*"),
                 each at the last shared rate divided by the runners last seen, so that N runners that lose
                 Redis together still send about the shared rate in total

Pure and synchronous: every method takes `now` (the engine's monotonic clock). The buckets are made when
Redis goes away (or at the first acquire without it) and dropped when it comes back: the shared buckets
then take over from Redis's own state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bulkops.options import RateLimit
from bulkops.engine.ratelimit import PACING_MARGIN
from bulkops.redis.gcra import LocalGcra

#: Share of a configured rate that is sent (see "Pacing" in `ratelimit`): the shared buckets pace too.
PACING = 1.0 - PACING_MARGIN
#: The key of the credential-wide bucket.
GLOBAL = "*"


@dataclass(slots=True)
class SharedView:
    """One bucket as Redis last described it."""

    ceiling: float
    """The lowest rate a live runner was configured with, paced (`PACING`); inf when none was."""
    learned: float | None
    """The rate runners learned from the gateway, if any."""
    runners: int
    """Live runners sharing the bucket (at least this one)."""

    @property
    def rate(self) -> float:
        """The rate the bucket paces at: the lower of the ceiling and the learned rate."""
        return self.ceiling if self.learned is None else min(self.ceiling, self.learned)


class Fallback:
    """Local buckets at the shared rate divided by the runners last seen (see the module docstring)."""

    __slots__ = ("_buckets", "_holds", "runners", "views")

    def __init__(self) -> None:
        self.views: dict[str, SharedView] = {}
        self.runners = 1
        """Live runners in the scope, as last seen."""
        self._buckets: dict[str, LocalGcra] = {}
        self._holds: dict[str, float] = {}

    def seen(self, project_id: str, reply: Sequence[Any]) -> tuple[float, float, float | None]:
        """Remember what an ACQUIRE reply says (its fields: `scripts.ACQUIRE`): (the wait, the lowest
        configured project rate, the lowest configured global rate or None)."""
        wait, _rate, low, n, grate, glow, runners, learned, glearned = reply
        self.views[project_id] = SharedView(float(low) * PACING, _number(learned), int(n))
        self.runners = max(1, int(runners))
        if grate:
            ceiling = float(glow) * PACING if glow else math.inf
            self.views[GLOBAL] = SharedView(ceiling, _number(glearned), self.runners)
        return max(0.0, float(wait)), float(low), _number(glow) if grate else None

    def reset(self) -> None:
        """Forget the local buckets (Redis is back, or a new outage starts from the last shared state)."""
        self._buckets.clear()
        self._holds.clear()

    def rate(self, key: str) -> float | None:
        """The shared rate of a bucket ("*": the credential's) as last seen; None if unknown or unlimited."""
        view = self.views.get(key)
        if view is None or not math.isfinite(view.rate):
            return None
        return view.rate

    def _share(self, key: str) -> int:
        view = self.views.get(key)
        return max(1, view.runners if view is not None else self.runners)

    def _bucket(self, now: float, key: str, limit: RateLimit) -> LocalGcra:
        bucket = self._buckets.get(key)
        if bucket is None:
            share = self._share(key)
            known = self.rate(key)
            rate = (known if known is not None else limit.rate * PACING) / share
            bucket = self._buckets[key] = LocalGcra(rate, max(1.0, limit.capacity / share), now)
            until = self._holds.pop(key, None)
            if until is not None:
                bucket.hold(now, until)
        return bucket

    def reserve(self, now: float, project_id: str, limit: RateLimit, global_limit: RateLimit | None) -> float:
        """Take a slot in the project's local bucket and, when one applies, the credential's: the wait."""
        buckets = [self._bucket(now, project_id, limit)]
        if global_limit is not None or self.rate(GLOBAL) is not None:
            buckets.append(self._bucket(now, GLOBAL, global_limit or limit))
        at = max(bucket.allowed_at(now) for bucket in buckets)
        for bucket in buckets:
            bucket.commit(now, at)
        return at - now

    def learn(self, now: float, key: str, *, rate: float | None, hold_for: float | None) -> None:
        """Apply what this runner learned while Redis is away (its share of `rate`; the whole hold)."""
        if rate is not None:
            view = self.views.get(key)
            if view is None:
                view = self.views[key] = SharedView(math.inf, rate, self.runners)
            else:
                view.learned = rate
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.set_rate(now, view.rate / self._share(key))
        if hold_for:
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.hold(now, now + hold_for)
            else:
                self._holds[key] = max(self._holds.get(key, -math.inf), now + hold_for)


def _number(text: str) -> float | None:
    return float(text) if text else None
