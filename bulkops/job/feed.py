"""The coordinator's feeder: the input's rows into one stream per project, with backpressure.

A project's stream holds at most `cap` rows not yet final (queued, or held by a worker); the rows beyond
wait in an on-disk `Overflow` (the engine's), first in first out per project, and are published a chunk
at a time as the stream drains to half. So the coordinator's memory is O(projects), Redis holds at most
`cap` rows per project, and input sorted by project still reaches every project at once. Nothing is ever
`MAXLEN`-trimmed: an entry leaves its stream only with its final (`FINAL`).

Rows decided here (invalid, duplicates: `Result`s from the reader) are recorded at once through `record`
and never queued. Rows the job already knows (a final in Redis, an entry in a stream, a record in the
report: `known`) are not published again. After a cancel, the rows not yet published are recorded
`skipped` (`bulkops.cancelled`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import anyio

from bulkops.engine.overflow import Overflow
from bulkops.io.feed import thread_batches
from bulkops.job.grace import Grace
from bulkops.job.keys import GROUP, JobKeys
from bulkops.models import Outcome, Result, Target

#: Rows of one project in its stream at most (queued or held by a worker).
PROJECT_QUEUE = 256
#: Seconds between two top-ups of the streams from the overflow.
TOP_UP_EVERY = 0.1
CANCELLED = "bulkops.cancelled"

Known = Callable[[list[Target]], Awaitable[set[int]]]


def cancelled(target: Target) -> Result:
    """The record of a row never sent because the job was cancelled."""
    return Result(
        target.line, target.project_id, target.id, Outcome.SKIPPED,
        error_code=CANCELLED, error_msg="not sent: the job was cancelled (bulkops job cancel)",
    )  # fmt: skip


class Feeder:
    """Publishes the input's rows (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        keys: JobKeys,
        record: Callable[[list[Result]], None],
        known: Known,
        *,
        grace: Grace,
        cap: int = PROJECT_QUEUE,
    ) -> None:
        self.client = client
        self.keys = keys
        self.record = record
        self.known = known
        self.cap = cap
        self.grace = grace
        self.queued: Counter[str] = Counter()
        self.streams: set[str] = set()
        self.overflow = Overflow(chunk_rows=max(1, cap // 2))
        self.published = 0
        self.fed = False
        self.cancelled = False
        self.stopping = False

    async def adopt(self, projects: set[str]) -> None:
        """Re-attaching to a job: its projects have streams, their lengths are what is queued now."""
        self.streams |= projects
        for project_id in projects:
            self.queued[project_id] = await self.client.xlen(self.keys.stream(project_id))

    async def feed(self, items: Iterator[Target | Result]) -> None:
        """Publish every row of the input; mark the job `fed` when all are in the streams."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._topper)
            async for batch in thread_batches(items):
                if self.stopping:
                    break
                await self._batch(batch)
            while len(self.overflow) and not self.stopping:  # noqa: ASYNC110 - the topper drains it
                await anyio.sleep(TOP_UP_EVERY)
            tg.cancel_scope.cancel()
        if self.stopping:
            return
        if self.cancelled:
            for project_id in self.overflow.projects():
                self.record([cancelled(t) for t in self.overflow.drain(project_id)])
        await self.grace.call("publishing rows", lambda: self.client.hset(self.keys.meta, "fed", "1"))
        self.fed = True
        self.overflow.close()

    async def _batch(self, batch: list[Target | Result]) -> None:
        decided = [item for item in batch if isinstance(item, Result)]
        targets = [item for item in batch if isinstance(item, Target)]
        if decided:
            self.record(decided)
        if not targets:
            return
        skip = await self.grace.call("publishing rows", lambda: self.known(targets))
        now: list[Target] = []
        for t in targets:
            if t.line in skip:
                continue
            if self.cancelled:
                self.record([cancelled(t)])
                continue
            p = t.project_id
            if self.overflow.pending_for(p) or self.queued[p] >= self.cap:
                while self.overflow.full and not self.stopping:  # noqa: ASYNC110 - the topper drains it
                    await anyio.sleep(TOP_UP_EVERY)
                self.overflow.push(t)
            else:
                self.queued[p] += 1
                now.append(t)
        await self._publish(now)

    async def _publish(self, targets: list[Target]) -> None:
        if not targets:
            return
        k = self.keys
        new = {t.project_id for t in targets} - self.streams

        async def publish() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                for project_id in sorted(new):
                    pipe.xgroup_create(k.stream(project_id), GROUP, id="0", mkstream=True)
                for t in targets:
                    pipe.xadd(k.stream(t.project_id), {"l": t.line, "i": t.id})
                if new:
                    pipe.sadd(k.projects, *sorted(new))
                await pipe.execute(raise_on_error=False)

        await self.grace.call("publishing rows", publish)
        self.streams |= new
        self.published += len(targets)

    async def _topper(self) -> None:
        """Top the streams up from the overflow as they drain (to half of `cap`)."""
        while True:
            await anyio.sleep(TOP_UP_EVERY)
            projects = self.overflow.projects()
            if not projects:
                continue

            lengths = await self.grace.call("publishing rows", partial(self._lengths, projects))
            for project_id, length in zip(projects, lengths, strict=True):
                self.queued[project_id] = int(length)
                if self.cancelled:
                    self.record([cancelled(t) for t in self.overflow.drain(project_id)])
                elif int(length) <= self.cap // 2:
                    chunk = self.overflow.take(project_id)
                    self.queued[project_id] += len(chunk)
                    await self._publish(chunk)

    async def _lengths(self, projects: list[str]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for project_id in projects:
                pipe.xlen(self.keys.stream(project_id))
            return list(await pipe.execute())
