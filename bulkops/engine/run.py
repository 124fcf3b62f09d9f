"""The public face of the engine: `stop_instances` and the `Run` it yields, and the task-group wiring.

    targets ──► Admission ──► Dispatch ──► Worker (x concurrency) ──► client ──► API
                (reader,       (waits for an    │  policy: retry / poll / throttled: back into the
                 scheduler,     idle worker,    │  work source, with a deadline (no worker held)
                 overflow)      then a row)     └─► Records ──► results (bounded) ──► the caller

The run is one task group the caller's `async with` owns: nothing runs on after the block. A wind-down
(`Run.wind_down()`, e.g. on SIGINT) stops reading and dispatching, lets in-flight requests finish within
`grace` seconds, then cancels them. Rows not finished get no record, so `--resume` sends them again (a
stop is safe to repeat); a job that was only waiting to poll is reported `accepted`.

Imports `options`, `clock`, `summary`, `models`, `api` (lazily: aiohttp only when a run really sends),
and every `engine` room.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import structlog
from anyio import CancelScope
from anyio.streams.memory import MemoryObjectReceiveStream

from bulkops.clock import Clock, SystemClock
from bulkops.engine.admission import Admission
from bulkops.engine.dispatch import Dispatch
from bulkops.engine.jobs import Client, Flow, Job, Targets
from bulkops.engine.limits import LocalLimiter
from bulkops.engine.records import Records, ResumeState
from bulkops.engine.seams import Feeder, Limiter, ResultSink
from bulkops.engine.worker import Worker
from bulkops.models import Result
from bulkops.options import Options
from bulkops.summary import RunStats

log = structlog.get_logger("bulkops.engine")

RESULT_BUFFER = 1024

SourceFactory = Callable[[Limiter, Records, Flow], Feeder]
"""Builds a run's work source from its limiter, its records and its flow signals, in place of the local
`Admission` (which reads `targets`): `bulkops.job` claims rows from Redis streams (issue 15)."""

LimiterFactory = Callable[[LocalLimiter], Limiter]
"""Builds a run's `Limiter` over its local buckets (the local work source paces with those): the default
is the local limiter itself; `bulkops.redis.share_limits` yields one that shares them through Redis."""


class _Engine:
    """The rooms of one run, wired together."""

    def __init__(
        self,
        options: Options,
        client: Client,
        records: Records,
        *,
        clock: Clock,
        rng: random.Random,
        resume: ResumeState | None,
        limiter: LimiterFactory | None,
        source: SourceFactory | None = None,
    ) -> None:
        self.options = options
        self.records = records
        self.flow = flow = Flow()
        local = LocalLimiter(options, clock, records.stats.learned_rates)
        self.limiter: Limiter = local if limiter is None else limiter(local)
        self.admission: Feeder = (
            Admission(options, clock, local, records, flow, resume)
            if source is None
            else source(self.limiter, records, flow)
        )
        admission = self.admission
        worker = Worker(options, client, clock, rng, admission, self.limiter, records, flow)
        self.dispatch = Dispatch(admission, worker, flow, clock)
        self.intake: CancelScope | None = None  # the reader's and the dispatcher's scope

    def wind_down(self) -> None:
        flow = self.flow
        if not flow.winding_down:
            flow.winding_down = True
            log.info("bulkops.run.stopping", inflight=flow.inflight, queued=self.admission.queued())
        flow.notify()
        self.admission.wake_reader()
        if self.intake is not None:
            self.intake.cancel()


@dataclass
class Run:
    """A running bulk stop: iterate it for results as they finish; `wind_down()` asks it to finish early."""

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

    def wind_down(self) -> None:
        """Stop reading and dispatching; in-flight requests finish within the grace period."""
        self._engine.wind_down()

    @property
    def winding_down(self) -> bool:
        """True once `wind_down()` was called."""
        return self._engine.flow.winding_down


@asynccontextmanager
async def stop_instances(
    targets: Targets,
    options: Options,
    *,
    resume: ResumeState | None = None,
    client: Client | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    stats: RunStats | None = None,
    limiter: LimiterFactory | None = None,
    source: SourceFactory | None = None,
) -> AsyncIterator[Run]:
    """Stop every target; iterate the yielded `Run` for one final `Result` per input row.

        async with bulkops.stop_instances(bulkops.read_targets("ids.csv", default_project=None),
                                          options) as run:
            async for result in run:
                print(result.line, result.outcome)

    `targets` is any iterable (read off the event loop) or async iterable of `Target` (rows to send) and
    `Result` (rows already decided, e.g. invalid ones from `read_targets`). `client` defaults to a
    `DevServerClient` for `options.endpoint`; `clock` and `rng` are injectable for tests. `limiter`
    builds the run's limiter over its local buckets (default: those alone; `bulkops.redis.share_limits`
    yields one that shares them with every runner naming the same Redis). `source` builds the work
    source in place of the local reader (`targets` is then handed to its `read`; `bulkops.job` ignores it).
    """
    clock = clock or SystemClock()
    stats = stats or RunStats(started=clock.monotonic())
    send, recv = anyio.create_memory_object_stream[Result](RESULT_BUFFER)
    async with _client_for(options, client) as api:
        records = Records(send, stats, clock)
        engine = _Engine(
            options,
            api,
            records,
            clock=clock,
            rng=rng or random.Random(),
            resume=resume,
            limiter=limiter,
            source=source,
        )
        async with anyio.create_task_group() as tg, recv:
            tg.start_soon(_main, engine, targets)
            run = Run(stats, recv, engine)
            try:
                yield run
            finally:
                tg.cancel_scope.cancel()
    stats.finished = clock.monotonic()
    stats.interrupted = engine.flow.winding_down


async def _main(engine: _Engine, targets: Targets) -> None:
    """Run reader, dispatcher and workers; close the results stream when every row is final."""
    options = engine.options
    log.info("bulkops.run.start", concurrency=options.concurrency, rate=options.rate.rate)
    try:
        await _run_stages(engine, targets)
    finally:
        engine.admission.close()
    stats = engine.records.stats
    stats.finished = engine.records.clock.monotonic()
    engine.limiter.learned_rates()
    log.info("bulkops.run.finish", **stats.as_dict())


async def _run_stages(engine: _Engine, targets: Targets) -> None:
    options = engine.options
    dispatch = engine.dispatch
    flow = engine.flow
    jobs_send, jobs_recv = anyio.create_memory_object_stream[Job](options.concurrency)
    idle = anyio.Semaphore(options.concurrency)
    async with engine.records.out:
        async with anyio.create_task_group() as workers:
            dispatch.active_workers = options.concurrency
            for _ in range(options.concurrency):
                workers.start_soon(dispatch.work, jobs_recv.clone(), idle)
            jobs_recv.close()
            async with anyio.create_task_group() as intake:
                engine.intake = intake.cancel_scope
                intake.start_soon(engine.admission.read, targets)
                intake.start_soon(dispatch.dispatch, jobs_send, idle)
            if flow.winding_down:
                workers.start_soon(_grace, engine, workers.cancel_scope)
        if flow.winding_down:
            await engine.records.settle()


async def _grace(engine: _Engine, workers: CancelScope) -> None:
    """After a wind-down, give in-flight requests `grace` seconds, then cancel them."""
    with anyio.move_on_after(engine.options.grace):
        await engine.dispatch.workers_done.wait()
        return
    log.warning("bulkops.run.grace_expired", inflight=engine.flow.inflight)
    workers.cancel()


@asynccontextmanager
async def _client_for(options: Options, client: Client | None) -> AsyncIterator[Client]:
    if client is not None:
        yield client
        return
    from bulkops.cloud.api import DevServerClient  # aiohttp is imported only when a run really sends

    async with DevServerClient(
        options.endpoint,
        options.credentials,
        timeout=options.timeout,
        concurrency=options.concurrency,
        insecure=options.insecure,
    ) as api:
        yield api


if TYPE_CHECKING:  # the JSON-lines report writer is the local result sink (mypy checks it; nothing runs)
    from bulkops.io.report import ReportWriter

    def _local_sink(writer: ReportWriter) -> ResultSink:
        return writer
