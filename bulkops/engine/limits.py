"""The local limiter: per-project token buckets that learn from 429s, and the credential's global bucket.

`LocalLimiter` is the `seams.Limiter` of one process. It makes each project's bucket
(`adaptive.paced_bucket`: 99 % of the configured rate; for a project whose rate is a guess, a slow start)
and holds the global one (`--global-rate`, or a `policy user|app|ip` hint learned from a 429). The local
work source's `Scheduler` draws on these same buckets (`bucket_for`, `global_bucket`) to choose fairly
among projects, so `admit` has nothing left to wait for.

Learning (`learn`): a 429 slows down the project that drew it (its hint `limit:N,time:...` applied at
once; without one, an estimate from what got through, then CUBIC-shaped AIMD), a shared-policy hint
caps the global bucket, `Retry-After` holds the whole project. An answer without throttling lets the
rate climb back. Every change is logged (`bulkops.rate.lowered` / `raised`) and kept in `learned`
(the run's `RunStats.learned_rates`).

Imports `adaptive`, `ratelimit`, `hints`, `retry` (caps), `options`, `clock`, `models`.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from bulkops.engine.adaptive import AdaptiveBucket, paced_bucket
from bulkops.clock import Clock
from bulkops.cloud.hints import ThrottleHint, parse_throttle
from bulkops.models import Reply
from bulkops.options import Options, RateLimit
from bulkops.engine.ratelimit import TokenBucket
from bulkops.engine.retry import RETRY_AFTER_CAP, THROTTLE_FLOOR

log = structlog.get_logger("bulkops.engine")


class LocalLimiter:
    """Token buckets in this process; see the module docstring."""

    def __init__(self, options: Options, clock: Clock, learned: dict[str, float]) -> None:
        self.options = options
        self.clock = clock
        self.learned = learned
        self.buckets: dict[str, TokenBucket] = {}
        self.global_bucket: TokenBucket | None = (
            paced_bucket(options.global_rate, clock.monotonic(), adaptive=options.adaptive)
            if options.global_rate
            else None
        )
        self.on_global: Callable[[TokenBucket], None] = lambda _bucket: None
        """Called with the global bucket when a hint makes one mid-run (the scheduler follows it)."""
        self._warned_hints: set[str] = set()

    def bucket_for(self, project_id: str, now: float) -> TokenBucket:
        """The project's bucket, made the first time the project is seen."""
        bucket = self.buckets.get(project_id)
        if bucket is None:
            options = self.options
            bucket = self.buckets[project_id] = paced_bucket(
                options.rate_for(project_id),
                now,
                adaptive=options.adaptive,
                probe=not options.rate_known(project_id),
            )
        return bucket

    async def admit(self, project_id: str) -> None:
        """Nothing to wait for: the work source took the project's slot from these buckets."""

    def learn(self, project_id: str, reply: Reply, *, throttled: bool, sent: float, now: float) -> None:
        """Learn from the answer to a request of `project_id` sent at `sent`."""
        bucket = self.buckets.get(project_id)
        if bucket is not None:
            bucket.answered(now)  # the first answer anchors the bucket's refill (ratelimit, "Pacing")
        glob = self.global_bucket
        if glob is not None:
            glob.answered(now)
        if throttled:
            self._throttled(project_id, reply, sent, now)
            return
        if isinstance(bucket, AdaptiveBucket):
            if reply.http_status is not None and reply.http_status < 500:
                if bucket.on_success(now):  # answered without throttling: the rate may climb
                    self._rate_changed(project_id, bucket, "bulkops.rate.raised")
            else:
                bucket.on_failure(now)
        if glob is not None and isinstance(glob, AdaptiveBucket) and glob.learned:
            glob.on_success(now)

    def _throttled(self, project_id: str, reply: Reply, sent: float, now: float) -> None:
        hint = parse_throttle(reply.error_msg)
        if hint is not None and hint.clamped:
            self._warn_clamped(project_id, hint)
        bucket = self.bucket_for(project_id, now)
        target = bucket
        if hint is not None and hint.shared:
            # The credential's quota, shared by every project it touches: the global bucket learns it.
            target = self._shared_bucket(hint, now)
            if isinstance(bucket, AdaptiveBucket):
                bucket.on_failure(now)  # frees its slow-start window slot; its own rate is not at fault
        if isinstance(target, AdaptiveBucket):
            if target.on_throttle(now, hint, sent_at=sent):
                self._rate_changed(project_id if target is bucket else "*", target, "bulkops.rate.lowered")
        else:
            target.hold(now, now + THROTTLE_FLOOR)
        if reply.retry_after:
            target.hold(now, now + min(reply.retry_after, RETRY_AFTER_CAP))

    def _shared_bucket(self, hint: ThrottleHint, now: float) -> TokenBucket:
        """The global bucket, made adaptive (from the hint) when the run had none."""
        glob = self.global_bucket
        if glob is None:
            rate = self.options.rate.rate * max(1, len(self.buckets))
            glob = self.global_bucket = paced_bucket(RateLimit(rate, hint.limit), now, adaptive=True)
            self.on_global(glob)
        return glob

    def _rate_changed(self, project_id: str, bucket: AdaptiveBucket, event: str) -> None:
        """Log a rate change; keep it in `learned` (summary, progress) once a 429 taught the bucket (the end
        of a slow start raises nothing the user needs to know of)."""
        if bucket.learned:
            self.learned[project_id] = bucket.rate
        log.debug(
            event,
            project_id=project_id,
            rate=round(bucket.rate, 2),
            ceiling=round(bucket.ceiling, 2),
            measured=None if bucket.measured_rate is None else round(bucket.measured_rate, 2),
        )

    def learned_rates(self) -> dict[str, float]:
        """The rates in use now for every project a 429 taught (`*`: the global bucket), into `learned`:
        the pace each was last sent at, not the last logged change (what the summary shows)."""
        learned = self.learned
        for project_id, bucket in self.buckets.items():
            if isinstance(bucket, AdaptiveBucket) and bucket.learned:
                learned[project_id] = bucket.rate
        glob = self.global_bucket
        if isinstance(glob, AdaptiveBucket) and glob.learned:
            learned["*"] = glob.rate
        return learned

    def _warn_clamped(self, project_id: str, hint: ThrottleHint) -> None:
        if project_id in self._warned_hints:
            return
        self._warned_hints.add(project_id)
        log.warning(
            "bulkops.rate.hint_clamped",
            project_id=project_id,
            limit=hint.limit,
            window_s=hint.window,
            used_rate=hint.effective_rate,
        )
