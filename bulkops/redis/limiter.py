"""`SharedLimiter`: the engine's `Limiter` when runners share their limits through Redis.

    async with share_limits(url, options) as limiter:          # ConfigError (one line) if unreachable
        async with stop_instances(targets, options, limiter=limiter) as run: ...

It sits over the run's own `LocalLimiter`, which the local work source still paces with (fair choice
among projects, slow start, what a 429 teaches this runner). Before each request, `admit` reserves the
send slot in Redis (`SharedLimits.acquire`, one round trip, on Redis time) and sleeps the wait it is
given; while it waits, the project's local bucket is held for as long, so the work source does not hand
out the project's next rows faster than the shared pace lets them go: each runner holds about one
booked slot per project, and books the next as it uses it.

What a 429 teaches is published (`SharedLimits.learn`) in the background, so that `learn` stays as cheap
as the local one: the rate Redis keeps for a project is the total over every runner, so

* a hint (`limit:N,time:...`) is published as the rate the local bucket took from it (98 % of N/s);
* a bare 429 cuts the shared rate by the AIMD factor (`adaptive.BETA`) of the rate last seen in Redis, not
  to this runner's own estimate (which counts only this runner's successes: a third of the truth when
  three runners share a project), once per `CUT_SPACING` per project (the 429s of one burst are one cut);
* a `Retry-After` holds the project's shared bucket (a `policy user|app|ip` hint: the credential's);
* slots are booked `BOOK_SPAN` seconds at a time (one round trip for up to `BOOK_MOST`): one at a time
  at gateway rates, so that a CPU-bound run does not pay a round trip per request; a 429 drops them;
* after `RAISE_AFTER` seconds without a 429, a rate learned from bare 429s is raised by `RAISE_STEP`
  (a hinted one is not: the gateway said what it is). Every runner computes the same raise from the
  same shared rate, so several runners raising at once raise it once.

Publications wait in a bounded queue (`OUTBOX`); when Redis is slow they are dropped, oldest last, and
a later 429 teaches the same again. Imports `engine.limits`, `engine.adaptive`, `cloud.hints`, and this
package's `limits`; redis-py only through it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import structlog
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from bulkops.clock import Clock
from bulkops.cloud.auth import Credentials
from bulkops.cloud.hints import parse_throttle
from bulkops.engine.adaptive import BETA, AdaptiveBucket
from bulkops.engine.limits import LocalLimiter
from bulkops.engine.retry import RETRY_AFTER_CAP
from bulkops.models import Reply
from bulkops.options import Options
from bulkops.redis.fallback import GLOBAL
from bulkops.redis.limits import SharedLimits

log = structlog.get_logger("bulkops.redis")

#: Publications waiting to reach Redis; more are dropped (a later 429 teaches the same again).
OUTBOX = 256
#: Seconds after a cut of a project's shared rate during which another bare 429 cuts nothing more.
CUT_SPACING = 1.0
#: Seconds without a 429 after which a rate learned from bare 429s is raised, and the step.
RAISE_AFTER = 10.0
RAISE_STEP = 1.1
#: Seconds of sending booked in one round trip (at most BOOK_MOST slots): one slot at 20/s, 32 when the
#: run is CPU-bound; a slot unused for STALE_SLOT seconds past its time is dropped (no burst from it).
BOOK_SPAN = 0.05
BOOK_MOST = 32
STALE_SLOT = 0.05
#: Seconds the lessons still queued at the end of a run get to reach Redis.
FLUSH_WITHIN = 2.0


@dataclass(slots=True)
class _Lesson:
    """One thing to publish: see `SharedLimits.learn`."""

    project_id: str
    rate: float | None = None
    hold_for: float | None = None
    shared: bool = False
    throttled: bool = False


class SharedLimiter:
    """The `seams.Limiter` over a run's local buckets that shares them through Redis (see the module)."""

    def __init__(
        self, local: LocalLimiter, limits: SharedLimits, outbox: MemoryObjectSendStream[_Lesson]
    ) -> None:
        self.local = local
        self.limits = limits
        self.options: Options = local.options
        self.clock: Clock = local.clock
        self._outbox = outbox
        self._last_cut: dict[str, float] = {}  # project -> when this runner last cut its shared rate
        self._last_429: dict[str, float] = {}  # project -> the last 429 this runner saw
        self._hinted: set[str] = set()  # projects whose shared rate a hint set
        self._pool: dict[str, deque[float]] = {}  # project -> slots booked and not used yet (monotonic)
        self._fetching: dict[str, anyio.Event] = {}  # project -> set when its booking round trip ends
        self.dropped = 0
        """Publications dropped because Redis did not keep up."""

    async def admit(self, project_id: str) -> None:
        """Take a slot booked among every runner, and wait for it (see the module)."""
        clock = self.clock
        at = self._pooled(project_id, clock.monotonic())
        while at is None:
            fetching = self._fetching.get(project_id)
            if fetching is not None:  # another worker books this project's next slots: share them
                await fetching.wait()
            else:
                await self._book(project_id)
            at = self._pooled(project_id, clock.monotonic())
        now = clock.monotonic()
        wait = at - now
        if wait > 0.0:
            bucket = self.local.bucket_for(project_id, now)
            # The project's next local token comes as this slot does, not one interval after it: the
            # runner then books its next slot as soon as this one is used (one booking in hand).
            bucket.hold(now, at - 1.0 / bucket.rate)
            await clock.sleep(wait)

    def _pooled(self, project_id: str, now: float) -> float | None:
        """The next booked slot of the project still good at `now` (stale ones dropped), if any."""
        pool = self._pool.get(project_id)
        while pool:
            at = pool.popleft()
            if at >= now - STALE_SLOT:
                return at
        return None

    async def _book(self, project_id: str) -> None:
        """Book the project's next slots (`BOOK_SPAN` seconds of them, 1 to `BOOK_MOST`) in one round trip."""
        if project_id not in self._hinted:
            self._maybe_raise(project_id)  # once per booking round trip, not per request
        options = self.options
        limit = options.rate_for(project_id)
        rate = self.limits.rate(project_id) or limit.rate
        count = max(1, min(BOOK_MOST, math.floor(rate * BOOK_SPAN)))
        done = self._fetching[project_id] = anyio.Event()
        try:
            waits = await self.limits.acquire_many(
                project_id, count, limit=limit, global_limit=options.global_rate
            )
            now = self.clock.monotonic()
            pool = self._pool.setdefault(project_id, deque())
            pool.extend(now + w for w in waits)
        finally:
            del self._fetching[project_id]
            done.set()

    def learn(self, project_id: str, reply: Reply, *, throttled: bool, sent: float, now: float) -> None:
        """Learn locally (the local limiter's rules), and publish what a 429 taught (see the module)."""
        self.local.learn(project_id, reply, throttled=throttled, sent=sent, now=now)
        if not throttled:
            return
        self._last_429[project_id] = now
        self._pool.pop(project_id, None)  # booked at the old pace
        hint = parse_throttle(reply.error_msg)
        shared = hint is not None and hint.shared
        key = GLOBAL if shared else project_id
        rate: float | None = None
        if hint is not None:
            bucket = self.local.global_bucket if shared else self.local.buckets.get(project_id)
            if isinstance(bucket, AdaptiveBucket) and bucket.learned:
                rate = bucket.rate
                self._hinted.add(key)
        elif now - self._last_cut.get(key, -math.inf) >= CUT_SPACING:
            seen = self.limits.rate(key)
            if seen is not None:
                rate = seen * BETA
                self._last_cut[key] = now
        hold = min(reply.retry_after, RETRY_AFTER_CAP) if reply.retry_after else None
        self._publish(_Lesson(project_id, rate=rate, hold_for=hold, shared=shared, throttled=True))

    def _maybe_raise(self, project_id: str) -> None:
        """A shared rate learned from bare 429s climbs back after `RAISE_AFTER` quiet seconds."""
        now = self.clock.monotonic()
        last = max(self._last_429.get(project_id, -math.inf), self._last_cut.get(project_id, -math.inf))
        if not math.isfinite(last) or now - last < RAISE_AFTER:
            return
        seen = self.limits.rate(project_id)
        if seen is None:
            return
        self._last_cut[project_id] = now  # the next raise comes RAISE_AFTER later
        self._publish(_Lesson(project_id, rate=seen * RAISE_STEP))

    def _publish(self, lesson: _Lesson) -> None:
        try:
            self._outbox.send_nowait(lesson)
        except anyio.WouldBlock:
            self.dropped += 1

    def learned_rates(self) -> dict[str, float]:
        """The local limiter's learned rates, and the shared rate of each project a 429 taught."""
        learned = self.local.learned_rates()
        for key in list(learned):
            shared = self.limits.rate(key)
            if shared is not None:
                learned[key] = min(learned[key], shared)
        return learned


async def _publisher(limits: SharedLimits, outbox: MemoryObjectReceiveStream[_Lesson]) -> None:
    """Send the lessons to Redis one at a time (SharedLimits.learn never raises for Redis trouble)."""
    async with outbox:
        async for lesson in outbox:
            await limits.learn(
                lesson.project_id,
                rate=lesson.rate,
                hold_for=lesson.hold_for,
                shared=lesson.shared,
                throttled=lesson.throttled,
            )


@asynccontextmanager
async def share_limits(
    url: str, options: Options, *, clock: Clock | None = None, password: str | None = None
) -> AsyncIterator[Callable[[LocalLimiter], SharedLimiter]]:
    """Connect to Redis (unreachable: `ConfigError`, one line, before anything is sent) and yield the
    factory `stop_instances(..., limiter=...)` takes; the heartbeat and the publisher run for the block."""
    async with open_shared_limits(
        url, endpoint=options.endpoint, credentials=options.credentials, password=password, clock=clock
    ) as limits:
        send, recv = anyio.create_memory_object_stream[_Lesson](OUTBOX)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_publisher, limits, recv)
            try:
                yield lambda local: SharedLimiter(local, limits, send)
            finally:
                send.close()  # the publisher sends what is left, for at most FLUSH_WITHIN seconds
                tg.cancel_scope.deadline = anyio.current_time() + FLUSH_WITHIN


@asynccontextmanager
async def open_shared_limits(
    url: str,
    *,
    endpoint: str,
    credentials: Credentials | None,
    password: str | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[SharedLimits]:
    """`SharedLimits` connected, its heartbeat running in a task group of the block; closed on the way out
    (cancellation included)."""
    limits = SharedLimits(url, endpoint=endpoint, credentials=credentials, password=password, clock=clock)
    await limits.connect()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(limits.run)
            try:
                yield limits
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await limits.aclose()
