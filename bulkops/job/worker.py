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
from bulkops.errors import BulkOpsError
from bulkops.io.report import record_line
from bulkops.job.keys import GROUP, JobKeys
from bulkops.job.scripts import FINAL
from bulkops.job.source import JobLimiter, JobSource
from bulkops.models import Result
from bulkops.options import Options
from bulkops.summary import RunStats

log = structlog.get_logger("bulkops.job")

#: Milliseconds a heartbeat key lives: a worker silent this long is dead, and its rows are taken over.
HEARTBEAT_TTL_MS = 5000
#: Seconds between heartbeats.
BEAT_EVERY = 1.0
#: Seconds a worker keeps trying to write finals while Redis does not answer, before it gives up.
REDIS_GRACE = 300.0


class JobError(BulkOpsError):
    """The job cannot go on (Redis gone for longer than the grace): one line, exit 1."""


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
            except _errors():
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
            except _errors():
                pass


class FinalSink:
    """Writes each result as its row's final in Redis (see the module docstring)."""

    def __init__(self, client: Any, keys: JobKeys, source: JobSource) -> None:
        self.client = client
        self.keys = keys
        self.source = source
        self._final = client.register_script(FINAL)
        self.won = 0
        self.lost = 0

    async def write(self, batch: list[Result]) -> None:
        held = self.source.held
        todo = [(r, held[r.line]) for r in batch if r.line in held]
        if not todo:
            return
        k = self.keys
        deadline = time.monotonic() + REDIS_GRACE
        delay = 0.5
        while True:
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for r, (project_id, entry_id) in todo:
                        await self._final(
                            keys=[k.final, k.finals, k.stream(project_id)],
                            args=[GROUP, entry_id, r.line, r.outcome.value, record_line(r)],
                            client=pipe,
                        )
                    won = await pipe.execute()
                break
            except _errors() as exc:
                if time.monotonic() > deadline:
                    raise JobError(
                        f"Redis did not take the finals of {len(todo)} rows for {REDIS_GRACE:.0f} s: "
                        f"{' '.join(str(exc).split())[:160]}"
                    ) from exc
                log.warning("bulkops.job.final_retry", rows=len(todo), delay=delay)
                await anyio.sleep(delay)
                delay = min(5.0, 2 * delay)
        for (r, _), first in zip(todo, won, strict=True):
            self.source.settled(r.line)
            if int(first):
                self.won += 1
            else:
                self.lost += 1


async def work(
    client: Any,
    redis_url: str,
    keys: JobKeys,
    consumer: str,
    options: Options,
    *,
    stats: RunStats,
    on_run: Callable[[Run, anyio.CancelScope], None] | None = None,
) -> JobSource:
    """Work on the job's rows until it is over for this worker (or `Run.wind_down`); returns the source
    (what it claimed, reaped, poisoned). `on_run(run, scope)` lets the caller attach signal handlers."""
    from bulkops.redis.limiter import share_limits

    made: list[JobSource] = []
    async with share_limits(redis_url, options) as shared:

        def limiter(local: LocalLimiter) -> Limiter:
            return JobLimiter(shared(local))

        def source(lim: Limiter, records: Records, flow: Flow) -> JobSource:
            assert isinstance(lim, JobLimiter)
            made.append(
                JobSource(client, keys, consumer, lim, records, flow, concurrency=options.concurrency)
            )
            return made[0]

        with anyio.CancelScope() as scope:
            async with stop_instances([], options, stats=stats, limiter=limiter, source=source) as run:
                sink = FinalSink(client, keys, made[0])
                if on_run is not None:
                    on_run(run, scope)
                results = aiter(run)
                while True:
                    with anyio.CancelScope(shield=True):  # no result dropped in hand (see cli.runner)
                        try:
                            first = await anext(results)
                        except StopAsyncIteration:
                            break
                        await sink.write([first, *run.take_ready()])
        log.info("bulkops.job.worker_done", won=sink.won, lost=sink.lost, claimed=made[0].claimed)
    return made[0]


def _errors() -> tuple[type[BaseException], ...]:
    from bulkops.redis.client import redis_errors

    return redis_errors()
