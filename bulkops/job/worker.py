"""One worker of a job: the engine over the job's streams (`JobSource`), its finals written to Redis.

    async with presence(client, keys, consumer):       # heartbeat key, HEARTBEAT_TTL; deleted on the way out
        stats = await work(client, url, keys, consumer, options, ...)

`work` runs `stop_instances` with `source=` a `JobSource` and `limiter=` a `JobLimiter` over the
`SharedLimiter` (`bulkops.redis.share_limits`), so every retry, poll, 429 and circuit is the engine's own
policy, inside the worker that holds the row. Its results go to `FinalSink`, not to a report: the
`FINAL` script per row (HSETNX + XADD to the finals stream + XACK + XDEL, atomically: the first final of
a row wins), one pipeline per batch. Why not `seams.ResultSink`: its `write_many` is synchronous (a
file's), and a final in Redis is a round trip.

A worker that stops (done, Ctrl-C, an error) deletes its heartbeat key on the way out: the rows it still
held (retries waiting, rows claimed but not sent) are claimed by the other workers at their next sweep. A
worker that dies stops beating: the same happens within HEARTBEAT_TTL.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog

from bulkops.engine.jobs import Flow
from bulkops.engine.limits import LocalLimiter
from bulkops.engine.records import Records
from bulkops.engine.run import Run, stop_instances
from bulkops.engine.seams import Limiter
from bulkops.io.report import record_line
from bulkops.job.grace import AWAY_PAUSE, Grace, errors, job_gone
from bulkops.job.keys import GROUP, HEARTBEAT_TTL_MS, JobKeys
from bulkops.job.scripts import FINAL
from bulkops.job.source import JobLimiter, JobSource
from bulkops.models import Result
from bulkops.options import Options
from bulkops.summary import RunStats

log = structlog.get_logger("bulkops.job")

#: Seconds between heartbeats.
BEAT_EVERY = 1.0


def consumer_name() -> str:
    """This worker's name in the job: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@asynccontextmanager
async def presence(client: Any, keys: JobKeys, consumer: str) -> AsyncIterator[None]:
    """Heartbeat for the block; on the way out (however it ends) the heartbeat key goes at once."""

    async def beat() -> None:
        await client.set(keys.heartbeat(consumer), "1", px=HEARTBEAT_TTL_MS)
        await client.zadd(keys.workers, {consumer: time.time()})

    async def beating() -> None:
        while True:
            await anyio.sleep(BEAT_EVERY)
            try:
                await beat()
            except errors():
                pass  # Redis away: the claims stop too; beats resume when it answers

    await beat()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(beating)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
            try:
                await client.delete(keys.heartbeat(consumer))
                await client.zrem(keys.workers, consumer)
            except errors():
                pass


class FinalSink:
    """Writes each result as its row's final in Redis (see the module docstring).

    While Redis is away the finals wait here (`unsent`, in memory) and `flusher` replays them when it is
    back (FINAL is first-writer-wins, so a replay is harmless); `local` (the coordinator's report) gets
    every result at once, so a coordinator keeps its own finals whatever becomes of Redis."""

    def __init__(
        self,
        client: Any,
        keys: JobKeys,
        source: JobSource,
        grace: Grace,
        local: Callable[[list[Result]], None] | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.source = source
        self.grace = grace
        self.local = local
        self.unsent: list[Result] = []
        self._final = client.register_script(FINAL)
        self._lock = anyio.Lock()
        self.won = 0
        self.lost = 0

    async def write(self, batch: list[Result]) -> None:
        held = self.source.held
        fresh = [r for r in batch if r.line in held]
        if self.local is not None and fresh:
            self.local(fresh)
        self.unsent += fresh
        await self.flush()

    async def flush(self) -> bool:
        """Try to write the finals waiting; False (they keep waiting) when Redis does not answer."""
        async with self._lock:
            held, k = self.source.held, self.keys
            todo, self.unsent = [r for r in self.unsent if r.line in held], []  # write() may add meanwhile
            if not todo:
                return True
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for r in todo:
                        project_id, entry_id = held[r.line]
                        await self._final(
                            keys=[k.final, k.finals, k.stream(project_id), k.meta],
                            args=[GROUP, entry_id, r.line, r.outcome.value, record_line(r)],
                            client=pipe,
                        )
                    won = await pipe.execute()
            except errors() as exc:
                self.unsent = todo + self.unsent
                self.grace.trouble(exc, f"writing the finals of {len(todo)} rows")
                return False
            self.grace.ok()
        if any(int(w) < 0 for w in won):
            raise job_gone(k.name)
        for r, first in zip(todo, won, strict=True):
            self.source.settled(r.line)
            if int(first):
                self.won += 1
            else:
                self.lost += 1
        return True

    async def flusher(self) -> None:
        """While finals wait (Redis away), try again every AWAY_PAUSE s (JobError after the grace)."""
        while True:
            await anyio.sleep(AWAY_PAUSE)
            if self.unsent:
                await self.flush()

    async def drain(self) -> None:
        """The run is over: wait until every final is written (or the grace is over: JobError)."""
        while not await self.flush():  # noqa: ASYNC110 - Redis away: nothing to wait on but time
            await anyio.sleep(AWAY_PAUSE)


async def work(
    client: Any,
    redis_url: str,
    keys: JobKeys,
    consumer: str,
    options: Options,
    *,
    stats: RunStats,
    grace: Grace,
    local: Callable[[list[Result]], None] | None = None,
    on_run: Callable[[Run, anyio.CancelScope], None] | None = None,
) -> JobSource:
    """Work on the job's rows until it is over for this worker (or `Run.wind_down`); returns the source
    (what it claimed, reaped, poisoned). `grace`: how long Redis may be away (JobError after it); `local`
    gets every result too (the coordinator's report). `on_run(run, scope)` attaches signal handlers."""
    from bulkops.redis.limiter import share_limits

    made: list[JobSource] = []
    async with share_limits(redis_url, options) as shared:

        def limiter(local: LocalLimiter) -> Limiter:
            return JobLimiter(shared(local))

        def source(lim: Limiter, records: Records, flow: Flow) -> JobSource:
            assert isinstance(lim, JobLimiter)
            made.append(
                JobSource(
                    client, keys, consumer, lim, records, flow, concurrency=options.concurrency, grace=grace
                )
            )
            return made[0]

        with anyio.CancelScope() as scope:
            async with stop_instances([], options, stats=stats, limiter=limiter, source=source) as run:
                sink = FinalSink(client, keys, made[0], grace, local)
                if on_run is not None:
                    on_run(run, scope)
                results = aiter(run)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sink.flusher)
                    while True:
                        with anyio.CancelScope(shield=True):  # no result dropped in hand (see cli.runner)
                            try:
                                first = await anext(results)
                            except StopAsyncIteration:
                                break
                            await sink.write([first, *run.take_ready()])
                    await sink.drain()
                    tg.cancel_scope.cancel()
        log.info("bulkops.job.worker_done", won=sink.won, lost=sink.lost, claimed=made[0].claimed)
    return made[0]
