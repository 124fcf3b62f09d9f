"""Admission, the local work source: the input read in batches into the fair `Scheduler`, the rows that
do not fit in memory into the on-disk `Overflow`, and rows given back (retries, polls, throttled rows).

Bounds. A project holds at most 256 rows in memory (and the scheduler about `lookahead` in all); the
rest of its rows wait, in order, in the `Overflow`, so the reader keeps going and finds the other
projects: input sorted by project still reaches N projects x R even when one project has more rows than
the window. The reader stops only when the overflow is full. Projects are topped up from the overflow a
chunk at a time as they drain (`take`); a project whose rows are all on disk is let in ahead of top-ups.

Rows already decided (`Result`s from the reader, invalid hand-built targets, rows `--resume` finds done)
never reach the scheduler; rows of a project given up (`give_up`: its circuit opened) are skipped.

Imports `scheduler`, `overflow`, `feed`, `options`, `clock`, `summary`, `models`, and `engine.jobs`,
`engine.records`, `engine.limits`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from contextlib import aclosing

import anyio

from bulkops.clock import Clock
from bulkops.engine.jobs import Flow, Job, Targets
from bulkops.engine.limits import LocalLimiter
from bulkops.engine.overflow import Overflow
from bulkops.engine.records import Records, ResumeState, validated
from bulkops.engine.scheduler import Scheduler
from bulkops.io.feed import thread_batches
from bulkops.models import Result, Target
from bulkops.options import Options

READ_BATCH = 512
PROJECT_QUEUE = 256  # rows of one project held in memory; the rest wait in the overflow


class Admission:
    """The local `seams.WorkSource`: see the module docstring."""

    def __init__(
        self,
        options: Options,
        clock: Clock,
        limiter: LocalLimiter,
        records: Records,
        flow: Flow,
        resume: ResumeState | None,
    ) -> None:
        self.options = options
        self.clock = clock
        self.records = records
        self.stats = records.stats
        self.flow = flow
        self.resume = resume
        self.sched: Scheduler[Job] = Scheduler(limiter.bucket_for, limiter.global_bucket)
        limiter.on_global = self.sched.set_global_bucket
        self.project_cap = max(1, min(max(PROJECT_QUEUE, 2 * options.concurrency), options.lookahead // 2))
        self.overflow = Overflow(chunk_rows=self.project_cap)
        self.open_circuits: dict[str, tuple[str, str]] = {}  # project -> (error_code, why), rows skipped
        self.closed: tuple[str, str] | None = None  # every project: the endpoint circuit opened
        self.reader_done = False
        self._space = anyio.Event()  # set when the overflow has room again (the reader may wait for it)
        self._entering: dict[str, None] = {}  # projects with rows on disk and none queued, oldest first

    # -- the work source --------------------------------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        return self.reader_done and not len(self.overflow)

    def push_later(self, job: Job, at: float) -> None:
        self.sched.push_later(job, at)

    def push_front(self, job: Job, now: float) -> None:
        self.sched.push_front(job, now)

    def give_up(self, project_id: str, code: str, why: str) -> list[Job]:
        """Close the project (later rows are skipped with `code` and `why`) and drain what it held."""
        self.open_circuits[project_id] = (code, why)
        drained = self.sched.drain_project(project_id)
        drained.extend(Job(t, project_id) for t in self.overflow.drain(project_id))
        self._space.set()
        return drained

    def give_up_all(self, code: str, why: str) -> list[Job]:
        """Close every project, known and still to come (the endpoint is unreachable); drain them all."""
        self.closed = (code, why)
        projects = {project_id for project_id, _bucket in self.sched.buckets()}
        projects.update(self.overflow.projects())
        return [job for project_id in sorted(projects) for job in self.give_up(project_id, code, why)]

    def wake_reader(self) -> None:
        """The run winds down: a reader waiting for room in the overflow looks again (and stops)."""
        self._space.set()

    def close(self) -> None:
        self.overflow.close()

    def queued(self) -> int:
        return self.sched.pending()

    def take(self, now: float) -> Job | float | None:
        """The scheduler's next job (or wait), topping up projects from the overflow as they drain."""
        popped = self.sched.pop(now)
        overflow = self.overflow
        if not len(overflow):
            return popped
        if isinstance(popped, Job):
            if self._entering:
                self._let_in()
            project_id = popped.project_id
            # Top up by queued rows only: retries waiting out a backoff cannot be sent now, and counting
            # them would starve a throttled project of the rows it could send.
            if (
                overflow.pending_for(project_id)
                and self.sched.queued_for(project_id) <= self.project_cap // 2
            ):
                if not self._entering:
                    self._refill(project_id)
                elif not self.sched.queued_for(project_id):
                    self._entering[project_id] = None  # others wait for room: take a turn behind them
            return popped
        # Nothing sendable now: bring in projects that have rows on disk and none in memory. A project
        # that is not in memory cannot use its tokens, so these may take the scheduler past `lookahead`,
        # up to twice it (a soft bound that keeps memory O(lookahead) with many projects).
        room = 2 * self.options.lookahead - self.sched.pending()
        for project_id in overflow.projects():
            if room <= 0:
                break
            if project_id not in self.open_circuits and not self.sched.queued_for(project_id):
                room -= self._refill(project_id)
        return self.sched.pop(self.clock.monotonic())

    def _let_in(self) -> None:
        """Bring in projects whose rows are all on disk, before any project in memory is topped up.

        When concurrency is the bound, something is always sendable, so the "nothing sendable" path of
        `take` never runs: without this, a project that came after the window filled would wait until
        the others finished. Same soft bound as there (twice `lookahead`); while projects wait for
        room, the ones in memory drain without top-ups, which makes the room.
        """
        entering = self._entering
        room = 2 * self.options.lookahead - self.sched.pending()
        while entering and room > 0:
            project_id = next(iter(entering))
            del entering[project_id]
            if project_id not in self.open_circuits and not self.sched.queued_for(project_id):
                room -= self._refill(project_id)

    def _refill(self, project_id: str) -> int:
        self._entering.pop(project_id, None)
        now = self.clock.monotonic()
        targets = self.overflow.take(project_id)
        self.sched.push_many(project_id, [self._job(target, now) for target in targets], now)
        self._space.set()  # the overflow has room again, if the reader was waiting for it
        return len(targets)

    # -- the reader -------------------------------------------------------------------------------------

    async def read(self, targets: Targets) -> None:
        """Admit every row of the input, as it arrives; stop when the run winds down."""
        flow = self.flow
        try:
            async with aclosing(_batches(targets)) as batches:  # closed at once: its reader thread stops
                async for batch in batches:
                    for item in batch:
                        if flow.winding_down:
                            return
                        await self._admit(item)
        finally:
            self.reader_done = True
            flow.notify()

    def _job(self, target: Target, now: float) -> Job:
        """A row's job: a stop, or with --resume --wait a poll for a row whose stop was accepted before but
        never seen to its end (Ctrl-C while polling): polling it sends no second stop."""
        job = Job(target, target.project_id)
        resume = self.resume
        if (
            resume is not None
            and self.options.wait
            and resume.unconfirmed(target.line)
            and resume.done(target.project_id, target.id)
        ):
            job.polling = True
            job.passed = True  # accepted in an earlier run: its transit (a reboot's REBOOTING) is past
            job.poll_started = now
        return job

    async def _admit(self, item: Target | Result) -> None:
        resume = self.resume
        if isinstance(item, Result):
            if resume is not None and resume.line_done(item.line):
                self.stats.resumed_skips += 1
                self.stats.resumed_unsuccessful += 1  # invalid or skipped then, and still not stopped
                return
            await self.records.emit(item)
            return
        checked = validated(item)
        if isinstance(checked, Result):
            await self.records.emit(checked)
            return
        if (
            resume is not None
            and resume.done(item.project_id, item.id)
            and not (self.options.wait and resume.unconfirmed(item.line))
        ):
            self.stats.resumed_skips += 1
            return  # done; a row only `accepted` then is polled with --wait (see `_job`)
        project_id = item.project_id
        circuit = self.open_circuits.get(project_id) or self.closed
        if circuit is not None:
            await self.records.skip(Job(item, project_id), *circuit)
            return
        overflow = self.overflow
        flow = self.flow
        if (
            overflow.pending_for(project_id)
            or self.sched.queued_for(project_id) >= self.project_cap
            or self.sched.pending() >= self.options.lookahead
        ):
            # Not room in memory for this project now: the row waits on disk, in order, and the reader
            # goes on to find the other projects (sorted input still reaches N x R).
            while overflow.full and not flow.winding_down:
                self._space = anyio.Event()
                await self._space.wait()
            if flow.winding_down:
                return
            overflow.push(item)
            if not self.sched.queued_for(project_id):
                self._entering[project_id] = None  # on disk only: let it in ahead of top-ups (_let_in)
            flow.notify()
            return
        now = self.clock.monotonic()
        self.sched.push(self._job(item, now), now)
        flow.notify()


async def _batches(targets: Targets) -> AsyncGenerator[list[Target | Result], None]:
    """Yield the input in batches, as it arrives; a blocking iterator (a file, stdin) is read in a thread."""
    if isinstance(targets, AsyncIterable):
        batch: list[Target | Result] = []
        async for item in targets:
            batch.append(item)
            if len(batch) >= READ_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    if isinstance(targets, list | tuple):
        for i in range(0, len(targets), READ_BATCH):
            yield list(targets[i : i + READ_BATCH])
        return
    # A file or a pipe: read in a thread of its own, handed over as rows arrive, never waited for on
    # cancellation (a pipe that writes nothing for a minute must neither hold rows back nor signals).
    async with aclosing(thread_batches(targets, READ_BATCH)) as chunks:
        async for chunk in chunks:
            yield chunk
