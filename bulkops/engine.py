"""The engine: one anyio task group that turns targets into final results, bounded at every stage.

    targets ──► reader ──► Scheduler ──► dispatcher ──► workers (C) ──► client ──► API
                 │        (per-project    (waits for an    │
                 │         queues, tokens, idle worker,    ├─ retry / poll: back into the Scheduler,
                 │         fair)           then a token)   │   with a deadline (no worker held)
                 └────────────── results (bounded stream) ◄┘──► the caller (report writer, progress)

Bounds. A project holds at most 256 rows in memory (and the scheduler about `lookahead` in all); the
rest of its rows wait, in order, in the on-disk `Overflow`, so the reader keeps going and finds the other
projects: input sorted by project still reaches N projects x R even when one project has more rows than
the window. The reader stops only when the overflow is full. The dispatcher only pops a job when a
worker is idle, so at most `concurrency` requests are in flight; workers block on the results stream when
the consumer lags. Memory is O(lookahead + concurrency + projects), never O(rows); disk is O(rows spilled).

Decisions, each in one place:
* Classification is `outcomes.classify_stop/classify_show`; the retry decision is `_retry_or_fail` here;
  backoff and budget are `retry.Backoff` and `retry.RetryBudget`.
* A retry or a poll goes back into the scheduler with a deadline, so it takes a token like any request
  and never holds a worker while it waits.
* Never a second stop after a success answer: a job that got one either finishes or turns into a poll.
* Buckets are `ratelimit.paced_bucket`s: 99 % of the configured rate, one token of the burst held back at
  the start, so that a `--rate` equal to the server's limit does not draw 429s from arrival noise.
* 401/403 count per project; after `circuit_threshold` in a row, the project's circuit opens: its queued
  rows and every later row of it are reported `skipped` (`bulkops.circuit_open`) without a request; a
  row already sent (waiting on a retry) is `failed` with its last answer.
* An exception while handling one row ends that row `failed` (`bulkops.internal_error`), never the run.
  With `--wait`, a stop once accepted stays `accepted` whatever its polls meet (errors are noted).
* A graceful stop (`Run.stop()`, e.g. on SIGINT) stops reading and dispatching, lets in-flight requests
  finish within `grace` seconds, then cancels them. Rows not finished get no record, so `--resume`
  sends them again (a stop is safe to repeat); a job that was only waiting to poll is reported `accepted`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import structlog
from anyio import CancelScope
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from bulkops.adaptive import AdaptiveBucket, paced_bucket
from bulkops.clock import Clock, SystemClock
from bulkops.feed import thread_batches
from bulkops.hints import ThrottleHint, parse_throttle
from bulkops.models import (
    CIRCUIT_OPEN,
    INTERNAL_ERROR,
    INVALID_ID,
    INVALID_PROJECT_ID,
    RETRY_BUDGET,
    THROTTLED,
    WAIT_TIMEOUT,
    Outcome,
    Reply,
    Result,
    Target,
)
from bulkops.options import Options, RateLimit
from bulkops.outcomes import Action, classify_show, classify_stop
from bulkops.overflow import Overflow
from bulkops.ratelimit import TokenBucket
from bulkops.redact import Redactor
from bulkops.resume import ResumeState, utc_now
from bulkops.retry import RETRY_AFTER_CAP, THROTTLE_FLOOR, Backoff, RetryBudget
from bulkops.scheduler import Scheduler
from bulkops.summary import RunStats
from bulkops.validation import is_valid_instance_id, is_valid_project_id

log = structlog.get_logger("bulkops.engine")

_READ_BATCH = 512
_RESULT_BUFFER = 1024
_MAX_TICK = 0.05
_PROJECT_QUEUE = 256  # rows of one project held in memory; the rest wait in the overflow
_MAX_POLL = 30.0


class Client(Protocol):
    """What the engine needs of a DevServer client (`api.DevServerClient`, or a test double)."""

    async def stop(self, project_id: str, instance_id: str) -> Reply: ...

    async def show(self, project_id: str, instance_id: str) -> Reply: ...


@dataclass(slots=True, eq=False)
class _Job:
    target: Target
    project_id: str
    attempts: int = 0
    stop_attempts: int = 0
    failures: int = 0
    first_at: float | None = None
    last: Reply | None = None
    polling: bool = False
    poll_started: float = 0.0
    polls: int = 0


@dataclass
class Run:
    """A running bulk stop: iterate it for results as they finish; `stop()` asks it to wind down."""

    stats: RunStats
    _results: MemoryObjectReceiveStream[Result]
    _engine: _Engine = field(repr=False)

    def __aiter__(self) -> AsyncIterator[Result]:
        return self._results.__aiter__()

    async def batches(self, size: int = 512) -> AsyncIterator[list[Result]]:
        """Results in batches: waits for one, then takes what else is ready (up to `size`)."""
        recv = self._results
        async for first in recv:
            batch = [first]
            while len(batch) < size:
                try:
                    batch.append(recv.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            yield batch

    def take_ready(self) -> list[Result]:
        """Results that finished and wait to be taken, without waiting (what a cut-short run still has)."""
        ready: list[Result] = []
        while True:
            try:
                ready.append(self._results.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return ready

    def stop(self) -> None:
        """Stop reading and dispatching; in-flight requests finish within the grace period."""
        self._engine.request_stop()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called."""
        return self._engine.stopping


def _validated(target: Target) -> Target | Result:
    """Defence in depth for hand-built targets: a bad one becomes an invalid record, never a request."""
    if not is_valid_project_id(target.project_id):
        return Result(
            target.line, target.project_id[:200], target.id[:200], Outcome.INVALID,
            error_code=INVALID_PROJECT_ID, error_msg="project id is not 1-64 of [A-Za-z0-9_-]",
        )  # fmt: skip
    if not is_valid_instance_id(target.id):
        return Result(
            target.line, target.project_id, target.id[:200], Outcome.INVALID,
            error_code=INVALID_ID, error_msg="id does not match the API's instance id pattern",
        )  # fmt: skip
    return target


class _Engine:
    def __init__(
        self,
        options: Options,
        client: Client,
        out: MemoryObjectSendStream[Result],
        stats: RunStats,
        *,
        clock: Clock,
        rng: random.Random,
        resume: ResumeState | None,
    ) -> None:
        self.options = options
        self.client = client
        self.out = out
        self.stats = stats
        self.clock = clock
        self.resume = resume
        self.backoff = Backoff(options.retry, rng)
        self.budgets: dict[str, RetryBudget] = {}
        # The global bucket is the credential's ceiling: `--global-rate`, or a shared-policy hint
        # (`policy user|app|ip`) learned from a 429; bare 429s slow down the project that drew them.
        glob = (
            paced_bucket(options.global_rate, clock.monotonic(), adaptive=options.adaptive)
            if options.global_rate
            else None
        )
        self.sched: Scheduler[_Job] = Scheduler(self._bucket_for, glob)
        self.denials: dict[str, int] = {}
        self.open_circuits: dict[str, tuple[str, str]] = {}  # project -> (error_code, why), rows skipped
        self.throttled_since: dict[str, float] = {}  # project -> first 429 with no other answer since
        self.warned_hints: set[str] = set()
        self.inflight = 0
        self.reader_done = False
        self.stopping = False
        self._wake = anyio.Event()
        self._space = anyio.Event()
        self._low_water = options.lookahead - max(1, min(_READ_BATCH, options.lookahead // 4))
        self._project_cap = max(1, min(max(_PROJECT_QUEUE, 2 * options.concurrency), options.lookahead // 2))
        self.overflow = Overflow(chunk_rows=self._project_cap)
        self.front: CancelScope | None = None
        self.active_workers = 0
        self.workers_done = anyio.Event()
        self.awaiting_poll: set[_Job] = set()
        self._entering: dict[str, None] = {}  # projects with rows on disk and none queued, oldest first

    def _bucket_for(self, project_id: str, now: float) -> TokenBucket:
        options = self.options
        return paced_bucket(
            options.rate_for(project_id),
            now,
            adaptive=options.adaptive,
            probe=not options.rate_known(project_id),
        )

    def _budget(self, project_id: str) -> RetryBudget:
        budget = self.budgets.get(project_id)
        if budget is None:
            retry = self.options.retry
            budget = self.budgets[project_id] = RetryBudget(retry.budget_ratio, retry.budget_floor)
        return budget

    # -- signalling -------------------------------------------------------------------------------------

    def _notify(self) -> None:
        self._wake.set()

    async def _wait_notified(self) -> None:
        await self._wake.wait()
        self._wake = anyio.Event()

    def request_stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            log.info("bulkops.run.stopping", inflight=self.inflight, queued=self.sched.pending())
        self._notify()
        self._space.set()
        if self.front is not None:
            self.front.cancel()

    # -- results ----------------------------------------------------------------------------------------

    async def _emit(self, result: Result) -> None:
        self.stats.count(result)
        try:
            self.out.send_nowait(result)  # the common case: room in the buffer, no trip through the loop
        except anyio.WouldBlock:
            await self.out.send(result)  # the consumer lags: wait for it

    async def _finish(self, job: _Job, outcome: Outcome, **overrides: object) -> None:
        reply = job.last
        now = self.clock.monotonic()
        t = job.target
        elapsed = 0 if job.first_at is None else round((now - job.first_at) * 1000)
        if reply is None:
            status = http_status = error_code = error_msg = request_id = None
        else:
            status, http_status, request_id = reply.status, reply.http_status, reply.request_id
            if outcome.succeeded and outcome is not Outcome.ALREADY_STOPPED:
                error_code = error_msg = None
            else:
                error_code, error_msg = reply.error_code, reply.error_msg
        result = Result(
            t.line, t.project_id, t.id, outcome, status, http_status, error_code, error_msg, request_id,
            job.attempts, elapsed, utc_now(),
        )  # fmt: skip
        if overrides:  # the rare records that say more than the last reply (skips, budgets, timeouts)
            result = dataclasses.replace(result, **overrides)  # type: ignore[arg-type]
        await self._emit(result)

    async def _skip_for_circuit(self, job: _Job) -> None:
        """A row of a project given up on (its circuit is open): recorded without a request."""
        self.awaiting_poll.discard(job)
        if job.polling:
            await self._finish(job, Outcome.ACCEPTED)
            return
        code, why = self.open_circuits[job.project_id]
        last = job.last
        if last is not None:  # sent before (a retry or a throttled row): failed, with its last answer
            said = f"{last.error_code or last.http_status}: {last.error_msg or ''}"
            await self._finish(job, Outcome.FAILED, error_code=code, error_msg=f"{why}; last: {said}"[:300])
            return
        await self._finish(
            job,
            Outcome.SKIPPED,
            status=None,
            http_status=None,
            request_id=None,
            error_code=code,
            error_msg=f"not sent: {why}",
        )

    # -- reader -----------------------------------------------------------------------------------------

    async def read(self, targets: Iterable[Target | Result] | AsyncIterable[Target | Result]) -> None:
        try:
            async with aclosing(_batches(targets)) as batches:  # closed at once: its reader thread stops
                async for batch in batches:
                    for item in batch:
                        if self.stopping:
                            return
                        await self._admit(item)
        finally:
            self.reader_done = True
            self._notify()

    async def _admit(self, item: Target | Result) -> None:
        resume = self.resume
        if isinstance(item, Result):
            if resume is not None and resume.line_done(item.line):
                self.stats.resumed_skips += 1
                self.stats.resumed_unsuccessful += 1  # invalid or skipped then, and still not stopped
                return
            await self._emit(item)
            return
        checked = _validated(item)
        if isinstance(checked, Result):
            await self._emit(checked)
            return
        if resume is not None and resume.done(item.project_id, item.id):
            self.stats.resumed_skips += 1
            return
        project_id = item.project_id
        if project_id in self.open_circuits:
            await self._skip_for_circuit(_Job(item, project_id))
            return
        overflow = self.overflow
        if (
            overflow.pending_for(project_id)
            or self.sched.queued_for(project_id) >= self._project_cap
            or self.sched.pending() >= self.options.lookahead
        ):
            # Not room in memory for this project now: the row waits on disk, in order, and the reader
            # goes on to find the other projects (sorted input still reaches N x R).
            while overflow.full and not self.stopping:
                self._space = anyio.Event()
                await self._space.wait()
            if self.stopping:
                return
            overflow.push(item)
            if not self.sched.queued_for(project_id):
                self._entering[project_id] = None  # on disk only: let it in ahead of top-ups (_let_in)
            self._notify()
            return
        self.sched.push(_Job(item, project_id), self.clock.monotonic())
        self._notify()

    # -- dispatcher -------------------------------------------------------------------------------------

    async def dispatch(self, jobs: MemoryObjectSendStream[_Job], idle: anyio.Semaphore) -> None:
        async with jobs:
            while not self.stopping:
                await idle.acquire()
                job = await self._next_job()
                if job is None:
                    idle.release()
                    return
                self._claim(job)
                await self._hand_over(jobs, job)
                # Hand every ready job to an idle worker now, without a trip through the event loop
                # per job: one loop iteration then starts many requests, not one.
                while True:
                    try:
                        idle.acquire_nowait()
                    except anyio.WouldBlock:
                        break
                    ready = self._take_ready()
                    if ready is None:
                        idle.release()
                        break
                    await self._hand_over(jobs, ready)

    async def _hand_over(self, jobs: MemoryObjectSendStream[_Job], job: _Job) -> None:
        try:
            jobs.send_nowait(job)  # room is certain: at most `concurrency` jobs hold an idle permit
        except anyio.WouldBlock:
            await jobs.send(job)

    def _pop(self) -> _Job | float | None:
        """The scheduler's next job (or wait), topping up projects from the overflow as they drain."""
        popped = self.sched.pop(self.clock.monotonic())
        overflow = self.overflow
        if not len(overflow):
            return popped
        if isinstance(popped, _Job):
            if self._entering:
                self._let_in()
            project_id = popped.project_id
            # Top up by queued rows only: retries waiting out a backoff cannot be sent now, and counting
            # them would starve a throttled project of the rows it could send.
            if (
                overflow.pending_for(project_id)
                and self.sched.queued_for(project_id) <= self._project_cap // 2
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
        `_pop` never runs: without this, a project that came after the window filled would wait until
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
        self.sched.push_many(project_id, [_Job(target, project_id) for target in targets], now)
        self._space.set()  # the overflow has room again, if the reader was waiting for it
        return len(targets)

    async def _next_job(self) -> _Job | None:
        while not self.stopping:
            popped = self._pop()
            if popped is None:
                if self.reader_done and self.inflight == 0 and not len(self.overflow):
                    return None
                await self._wait_notified()
            elif isinstance(popped, float):
                await self.clock.sleep(min(popped, _MAX_TICK))
            else:
                return popped
        return None

    # -- workers ----------------------------------------------------------------------------------------

    async def work(self, jobs: MemoryObjectReceiveStream[_Job], idle: anyio.Semaphore) -> None:
        try:
            async with jobs:
                while True:
                    try:
                        job = jobs.receive_nowait()  # no extra trip through the loop when work is there
                    except anyio.WouldBlock:
                        try:
                            job = await jobs.receive()
                        except anyio.EndOfStream:
                            return
                    except anyio.EndOfStream:
                        return
                    next_job: _Job | None = job
                    try:
                        while next_job is not None:
                            try:
                                await self._handle(next_job)
                            except Exception as exc:  # one row's failure (a bug, no file descriptors)
                                await self._internal_error(next_job, exc)
                            finally:
                                self.inflight -= 1
                                self._notify()
                            # One trip through the loop: the report writer writes this result before
                            # this worker sends again, so answered rows not yet written stay within the
                            # rows in flight (what a kill may lose, and --resume sends again). asyncio's
                            # own sleep(0): bulkops runs on asyncio (aiohttp does), and anyio's
                            # checkpoint() costs twice as much, looking up the backend on every call.
                            await asyncio.sleep(0)
                            next_job = self._take_ready()
                    finally:
                        idle.release()
        finally:
            self.active_workers -= 1
            if self.active_workers == 0:
                self.workers_done.set()

    async def _internal_error(self, job: _Job, exc: Exception) -> None:
        """An exception escaped one row's handling: the row ends `failed`, the run goes on."""
        log.debug("bulkops.row.internal_error", project_id=job.project_id, id=job.target.id, exc_info=exc)
        self.awaiting_poll.discard(job)
        creds = self.options.credentials
        text = f"{type(exc).__name__}: {exc}"
        msg = (Redactor(creds.secrets()).redact(text) if creds else text) or ""
        if job.polling:  # the stop was taken: only its poll failed
            await self._finish(job, Outcome.ACCEPTED, error_code=INTERNAL_ERROR, error_msg=_poll_note(msg))
        else:
            await self._finish(job, Outcome.FAILED, error_code=INTERNAL_ERROR, error_msg=msg[:300])

    def _take_ready(self) -> _Job | None:
        """A job the scheduler lets go now (its tokens taken), for a worker that just finished one.

        The worker keeps its permit and sends it at once: no hand-over through the dispatcher and the
        jobs stream, which costs two trips through the event loop per request when the run is CPU-bound.
        The scheduler still decides which job goes (fairness and rates are its alone).
        """
        if self.stopping:
            return None
        popped = self._pop()
        if not isinstance(popped, _Job):
            return None
        self._claim(popped)
        return popped

    def _claim(self, job: _Job) -> None:
        """`job` left the scheduler for a worker: count it in flight."""
        self.inflight += 1
        self._made_space()

    def _made_space(self) -> None:
        """A job left the scheduler: wake the reader once the scheduler is down to its low-water mark.

        Waking it for every job would cost a task switch and a new event per request once the read-ahead
        window is full; refilling a batch at a time costs the same per batch.
        """
        if self.sched.pending() <= self._low_water:
            self._space.set()

    async def _handle(self, job: _Job) -> None:
        clock = self.clock
        t = job.target
        now = clock.monotonic()
        if job.first_at is None:
            job.first_at = now
            self._budget(job.project_id).on_request()
        stats = self.stats
        sent = now
        self.awaiting_poll.discard(job)
        if job.polling:
            reply = await self.client.show(t.project_id, t.id)
            stats.polls_sent += 1
            verdict = classify_show(reply)
        else:
            reply = await self.client.stop(t.project_id, t.id)
            stats.stops_sent += 1
            verdict = classify_stop(reply)
        stats.requests += 1
        job.attempts += 1
        job.last = reply
        now = clock.monotonic()
        action = verdict.action
        if action is Action.THROTTLED:
            await self._throttled(job, reply, sent, now)
            return
        if not job.polling:
            job.stop_attempts += 1  # what --max-attempts counts: every stop the server did not throttle
        if self.throttled_since:
            self.throttled_since.pop(job.project_id, None)
        bucket = self.sched.bucket(job.project_id)
        if isinstance(bucket, AdaptiveBucket):
            if reply.http_status is not None and reply.http_status < 500:
                if bucket.on_success(now):  # answered without throttling: the rate may climb
                    self._rate_changed(job.project_id, bucket, "bulkops.rate.raised")
            else:
                bucket.on_failure(now)
        glob = self.sched.global_bucket
        if glob is not None and isinstance(glob, AdaptiveBucket) and glob.learned:
            glob.on_success(now)
        if action is Action.RETRY:
            await self._retry_or_fail(job, reply, now)
            return
        if action is Action.DENIED:
            if job.polling:  # the stop was taken; a refused poll neither undoes it nor feeds the circuit
                await self._poll_failed(job)
                return
            await self._finish(job, verdict.outcome or Outcome.FAILED)
            await self._count_denial(job.project_id)
            return
        self.denials.pop(job.project_id, None)
        if action is Action.PENDING:
            await self._poll_later(job, now)
            return
        outcome = verdict.outcome or Outcome.FAILED
        if outcome is Outcome.FAILED and job.polling and not 200 <= (reply.http_status or 0) < 300:
            await self._poll_failed(job)  # a 4xx to the poll: the stop still stands
            return
        if job.failures and outcome.succeeded:
            self._budget(job.project_id).refund()  # a retry that worked costs the budget nothing
        if outcome is Outcome.ACCEPTED and self.options.wait and not job.polling:
            job.polling = True
            job.poll_started = now
            job.failures = 0
            self.awaiting_poll.add(job)
            self.sched.push_later(job, now + self.options.poll_interval)
            return
        await self._finish(job, outcome)

    # -- throttling -------------------------------------------------------------------------------------

    async def _throttled(self, job: _Job, reply: Reply, sent: float, now: float) -> None:
        """A 429: pacing, never failure. The limiter learns from it; the row goes back to the front of its
        project's queue (it spends neither the retry budget nor --max-attempts). Only a project throttled
        without a break for --throttle-timeout is given up (`bulkops.throttled`)."""
        project_id = job.project_id
        self.stats.throttled += 1
        hint = parse_throttle(reply.error_msg)
        if hint is not None and hint.clamped:
            self._warn_clamped(project_id, hint)
        bucket = self.sched.bucket(project_id)
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
        log.debug("bulkops.stop.throttled", project_id=project_id, id=job.target.id, attempt=job.attempts)
        since = self.throttled_since.setdefault(project_id, now)
        if now - since >= self.options.throttle_timeout:
            await self._throttled_out(job, now - since)
            return
        self.sched.push_front(job, now)

    def _shared_bucket(self, hint: ThrottleHint, now: float) -> TokenBucket:
        """The global bucket, made adaptive (from the hint) when the run had none."""
        glob = self.sched.global_bucket
        if glob is None:
            rate = self.options.rate.rate * max(1, self.sched.projects())
            glob = paced_bucket(RateLimit(rate, hint.limit), now, adaptive=True)
            self.sched.set_global_bucket(glob)
        return glob

    def _rate_changed(self, project_id: str, bucket: AdaptiveBucket, event: str) -> None:
        """Log a learned rate and keep it in the run's stats (summary, progress)."""
        self.stats.learned_rates[project_id] = bucket.rate
        log.debug(
            event,
            project_id=project_id,
            rate=round(bucket.rate, 2),
            ceiling=round(bucket.ceiling, 2),
            measured=None if bucket.measured_rate is None else round(bucket.measured_rate, 2),
        )

    def note_learned_rates(self) -> None:
        """Put the rates in use at the end into the stats (the summary): every project whose rate a 429
        taught, at the pace it was last sent at, not the last logged change."""
        learned = self.stats.learned_rates
        for project_id, bucket in self.sched.buckets():
            if isinstance(bucket, AdaptiveBucket) and bucket.learned:
                learned[project_id] = bucket.rate
        glob = self.sched.global_bucket
        if isinstance(glob, AdaptiveBucket) and glob.learned:
            learned["*"] = glob.rate

    def _warn_clamped(self, project_id: str, hint: ThrottleHint) -> None:
        if project_id in self.warned_hints:
            return
        self.warned_hints.add(project_id)
        log.warning(
            "bulkops.rate.hint_clamped",
            project_id=project_id,
            limit=hint.limit,
            window_s=hint.window,
            used_rate=hint.effective_rate,
        )

    async def _throttled_out(self, job: _Job, throttled_for: float) -> None:
        """The project was throttled without a break for --throttle-timeout: give it up."""
        timeout = self.options.throttle_timeout
        why = (
            f"project {job.project_id} was throttled (429) without a break for {throttled_for:.0f}s "
            f"(--throttle-timeout {timeout:g}s)"
        )
        self.awaiting_poll.discard(job)
        if job.polling:
            await self._finish(job, Outcome.ACCEPTED)
        else:
            await self._finish(job, Outcome.FAILED, error_code=THROTTLED, error_msg=why)
        self.stats.throttled_out.append(job.project_id)
        await self._open_circuit(job.project_id, THROTTLED, why, "bulkops.throttle.gave_up")

    async def _poll_failed(self, job: _Job) -> None:
        """Polling cannot finish (refused, an error, errors until --wait-timeout): the stop stays accepted."""
        reply = job.last
        assert reply is not None
        what = f"HTTP {reply.http_status}" if reply.http_status is not None else "no answer"
        await self._finish(
            job,
            Outcome.ACCEPTED,
            error_code=reply.error_code,
            error_msg=_poll_note(f"{what}: {reply.error_msg or ''}"),
        )

    async def _poll_later(self, job: _Job, now: float) -> None:
        if now - job.poll_started >= self.options.wait_timeout:
            last = job.last
            if last is not None and not 200 <= (last.http_status or 0) < 300:
                await self._poll_failed(job)  # the last poll failed: not known to be stuck, unknown
                return
            await self._finish(
                job,
                Outcome.FAILED,
                error_code=WAIT_TIMEOUT,
                error_msg=f"still {job.last.status if job.last else 'unknown'} after "
                f"--wait-timeout {self.options.wait_timeout:g}s",
            )
            return
        job.polls += 1
        delay = min(_MAX_POLL, self.options.poll_interval * 1.5**job.polls)
        self.awaiting_poll.add(job)
        self.sched.push_later(job, now + delay)

    async def _retry_or_fail(self, job: _Job, reply: Reply, now: float) -> None:
        job.failures += 1
        if job.polling:
            # A failed poll: the stop was taken; keep polling until --wait-timeout.
            await self._poll_later(job, now)
            return
        if job.stop_attempts >= self.options.retry.max_attempts:
            await self._finish(job, Outcome.FAILED)
            return
        if not self._budget(job.project_id).try_spend():
            await self._finish(
                job,
                Outcome.FAILED,
                error_code=RETRY_BUDGET,
                error_msg=f"retry budget spent (too many failures in project {job.project_id}); last: "
                f"{reply.error_code or reply.http_status}: {reply.error_msg or ''}"[:300],
            )
            return
        self.stats.retries += 1
        delay = self.backoff.delay(job.failures, reply.retry_after)
        log.debug(
            "bulkops.stop.retry",
            project_id=job.project_id,
            id=job.target.id,
            attempt=job.attempts,
            delay=round(delay, 3),
            http_status=reply.http_status,
            error_code=reply.error_code,
        )
        self.sched.push_later(job, now + delay)

    async def _count_denial(self, project_id: str) -> None:
        n = self.denials.get(project_id, 0) + 1
        self.denials[project_id] = n
        if n < self.options.circuit_threshold or project_id in self.open_circuits:
            return
        why = f"project {project_id} refused authentication {n} times in a row"
        self.stats.circuits_opened.append(project_id)
        await self._open_circuit(project_id, CIRCUIT_OPEN, why, "bulkops.circuit.open", denials=n)

    async def _open_circuit(self, project_id: str, code: str, why: str, event: str, **fields: object) -> None:
        """Give a project up: its queued rows, and every later row of it, are skipped with `code`."""
        self.open_circuits[project_id] = (code, why)
        drained = self.sched.drain_project(project_id)
        drained.extend(_Job(t, project_id) for t in self.overflow.drain(project_id))
        log.warning(event, project_id=project_id, skipped_queued=len(drained), **fields)
        for job in drained:
            await self._skip_for_circuit(job)
        self._space.set()

    async def settle(self) -> None:
        """After a graceful stop: report jobs that were only waiting to poll as accepted."""
        waiting, self.awaiting_poll = self.awaiting_poll, set()
        for job in sorted(waiting, key=lambda j: j.target.line):
            await self._finish(job, Outcome.ACCEPTED)


def _poll_note(what: str) -> str:
    return f"stop accepted; polling failed: {what}"[:300]


async def _batches(
    targets: Iterable[Target | Result] | AsyncIterable[Target | Result],
) -> AsyncGenerator[list[Target | Result], None]:
    """Yield the input in batches, as it arrives; a blocking iterator (a file, stdin) is read in a thread."""
    if isinstance(targets, AsyncIterable):
        batch: list[Target | Result] = []
        async for item in targets:
            batch.append(item)
            if len(batch) >= _READ_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
        return
    if isinstance(targets, list | tuple):
        for i in range(0, len(targets), _READ_BATCH):
            yield list(targets[i : i + _READ_BATCH])
        return
    # A file or a pipe: read in a thread of its own, handed over as rows arrive, never waited for on
    # cancellation (a pipe that writes nothing for a minute must neither hold rows back nor signals).
    async with aclosing(thread_batches(targets, _READ_BATCH)) as chunks:
        async for chunk in chunks:
            yield chunk


@asynccontextmanager
async def stop_instances(
    targets: Iterable[Target | Result] | AsyncIterable[Target | Result],
    options: Options,
    *,
    resume: ResumeState | None = None,
    client: Client | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    stats: RunStats | None = None,
) -> AsyncIterator[Run]:
    """Stop every target; iterate the yielded `Run` for one final `Result` per input row.

        async with bulkops.stop_instances(bulkops.read_targets("ids.csv", default_project=None),
                                          options) as run:
            async for result in run:
                print(result.line, result.outcome)

    `targets` is any iterable (read off the event loop) or async iterable of `Target` (rows to send) and
    `Result` (rows already decided, e.g. invalid ones from `read_targets`). `client` defaults to a
    `DevServerClient` for `options.endpoint`; `clock` and `rng` are injectable for tests.
    """
    clock = clock or SystemClock()
    stats = stats or RunStats(started=clock.monotonic())
    send, recv = anyio.create_memory_object_stream[Result](_RESULT_BUFFER)
    async with _client_for(options, client) as api:
        engine = _Engine(options, api, send, stats, clock=clock, rng=rng or random.Random(), resume=resume)
        async with anyio.create_task_group() as tg, recv:
            tg.start_soon(_main, engine, targets)
            run = Run(stats, recv, engine)
            try:
                yield run
            finally:
                tg.cancel_scope.cancel()
    stats.finished = clock.monotonic()
    stats.interrupted = engine.stopping


async def _main(engine: _Engine, targets: Iterable[Target | Result] | AsyncIterable[Target | Result]) -> None:
    """Run reader, dispatcher and workers; close the results stream when every row is final."""
    options = engine.options
    jobs_send, jobs_recv = anyio.create_memory_object_stream[_Job](options.concurrency)
    idle = anyio.Semaphore(options.concurrency)
    log.info("bulkops.run.start", concurrency=options.concurrency, rate=options.rate.rate)
    try:
        await _run_stages(engine, targets, jobs_send, jobs_recv, idle)
    finally:
        engine.overflow.close()
    engine.stats.finished = engine.clock.monotonic()
    engine.note_learned_rates()
    log.info("bulkops.run.finish", **engine.stats.as_dict())


async def _run_stages(
    engine: _Engine,
    targets: Iterable[Target | Result] | AsyncIterable[Target | Result],
    jobs_send: MemoryObjectSendStream[_Job],
    jobs_recv: MemoryObjectReceiveStream[_Job],
    idle: anyio.Semaphore,
) -> None:
    options = engine.options
    async with engine.out:
        async with anyio.create_task_group() as workers:
            engine.active_workers = options.concurrency
            for _ in range(options.concurrency):
                workers.start_soon(engine.work, jobs_recv.clone(), idle)
            jobs_recv.close()
            async with anyio.create_task_group() as front:
                engine.front = front.cancel_scope
                front.start_soon(engine.read, targets)
                front.start_soon(engine.dispatch, jobs_send, idle)
            if engine.stopping:
                workers.start_soon(_grace, engine, workers.cancel_scope)
        if engine.stopping:
            await engine.settle()


async def _grace(engine: _Engine, workers: CancelScope) -> None:
    """After a stop request, give in-flight requests `grace` seconds, then cancel them."""
    with anyio.move_on_after(engine.options.grace):
        await engine.workers_done.wait()
        return
    log.warning("bulkops.run.grace_expired", inflight=engine.inflight)
    workers.cancel()


@asynccontextmanager
async def _client_for(options: Options, client: Client | None) -> AsyncIterator[Client]:
    if client is not None:
        yield client
        return
    from bulkops.api import DevServerClient  # aiohttp is imported only when a run really sends

    async with DevServerClient(
        options.endpoint,
        options.credentials,
        timeout=options.timeout,
        concurrency=options.concurrency,
        insecure=options.insecure,
    ) as api:
        yield api
