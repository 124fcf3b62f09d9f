"""Redis gone mid-job: how long a process of the job (coordinator or worker) waits for it, `--redis-grace`.

    grace = Grace(300.0)
    try: ...a Redis call...; grace.ok()
    except errors() as exc: grace.trouble(exc, "claim")   # JobError once Redis has been away too long

One `Grace` per process: every task's failures count against the same clock (it starts at the first
failure, and is reset by the first answer after it). While Redis is away no row is claimed (claims are
Redis calls), rows in flight finish and their finals wait (`worker.FinalSink`); after the grace the
process stops with `JobError` (one line, exit 1). `settled(s)` tells the reaper whether Redis has answered
for `s` seconds: right after Redis is back every heartbeat key may have lapsed, and a live worker's rows
must not be taken over before it has beaten again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import structlog

from bulkops.errors import BulkOpsError

log = structlog.get_logger("bulkops.job")
T = TypeVar("T")

#: Seconds a process of the job waits for Redis before it gives up (--redis-grace's default).
REDIS_GRACE = 300.0
#: Seconds between two tries while Redis is away.
AWAY_PAUSE = 0.5


class JobError(BulkOpsError):
    """The job cannot go on (Redis gone for longer than the grace, or the job gone from Redis): one line,
    exit 1."""


class Grace:
    """The clock of one process's wait for Redis (see the module docstring)."""

    def __init__(self, seconds: float = REDIS_GRACE) -> None:
        self.seconds = seconds
        self.since: float | None = None  # monotonic time of the first failure of this outage
        self.back = float("-inf")  # when Redis last came back

    @property
    def away(self) -> bool:
        return self.since is not None

    def ok(self) -> None:
        """Redis answered."""
        if self.since is not None:
            log.warning("bulkops.job.redis_back", away_s=round(time.monotonic() - self.since, 1))
            self.since = None
            self.back = time.monotonic()

    def trouble(self, exc: BaseException, doing: str) -> None:
        """Redis did not answer while `doing`: JobError when it has been away longer than the grace."""
        if isinstance(exc, RuntimeError) and "closed" not in str(exc):
            raise exc  # a bug, not an outage (see `errors`)
        now = time.monotonic()
        if self.since is None:
            self.since = now
            log.warning("bulkops.job.redis_away", doing=doing, error=" ".join(str(exc).split())[:200])
        elif now - self.since > self.seconds:
            raise JobError(
                f"Redis did not answer for {self.seconds:g} s (--redis-grace) while {doing}: "
                f"{' '.join(str(exc).split())[:160]}"
            ) from exc

    async def call(self, doing: str, fn: Callable[[], Awaitable[T]]) -> T:
        """`await fn()`, again every AWAY_PAUSE s while Redis does not answer (JobError after the grace)."""
        while True:
            try:
                got = await fn()
            except errors() as exc:
                self.trouble(exc, doing)
                await anyio.sleep(AWAY_PAUSE)
                continue
            self.ok()
            return got

    def settled(self, seconds: float) -> bool:
        """Redis answers, and has answered for at least `seconds`."""
        return self.since is None and time.monotonic() - self.back >= seconds


def errors() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when Redis is away: redis-py's errors, socket errors, timeouts, and the
    RuntimeError uvloop raises for a write on a transport Redis closed (`Grace.trouble` re-raises any
    other RuntimeError)."""
    from bulkops.redis.client import redis_errors

    return (*redis_errors(), RuntimeError)


def job_gone(name: str) -> JobError:
    """The job's keys are gone from Redis mid-job (Redis restarted without its data)."""
    return JobError(
        f"job {name} is gone from Redis (restarted without persistence?): finals not yet in the report "
        "are lost; finish the report with the same command and --resume, without --redis and --job"
    )
