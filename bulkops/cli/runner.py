"""One `bulkops stop` run as the command line does it: report file, signals, summary, exit code.

The engine knows nothing of files, terminals or signals; this module wires them around it:

* the report writer consumes the engine's results in batches (one write and one flush per batch; the
  fsync, when due, in a worker thread); the summary counts what was written (`RunStats.tally`), so it is
  exactly the report, however the run ends;
* SIGINT or SIGTERM once (or a burst within a second, see `interrupts`): `Run.wind_down()` (finish in-flight
  within the grace period, exit 130); a later signal: cancel at once. Either way the results already
  finished are written, the report flushed and the summary printed;
* a write error (a full disk, a closed pipe): `Run.wind_down()` as for a signal, the rows that finish after it
  are counted as not recorded, exit 1 (docs/reliability.md);
* the summary goes to stderr, the exit code follows the contract.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import anyio
import structlog

from bulkops.engine import Run, stop_instances
from bulkops.engine.run import LimiterFactory
from bulkops.errors import ReportError
from bulkops.cli.interrupts import Interrupts
from bulkops.models import Result, Target
from bulkops.options import Options
from bulkops.io.report import ReportWriter
from bulkops.io.resume import ResumeState
from bulkops.summary import RunStats

log = structlog.get_logger("bulkops.runner")


@dataclass
class Observer:
    """Hooks for a live display: called with each batch of results, and once at the end.

    `background`, when given, runs as a task on the run's event loop while results come in (a display's
    idle redraws); it is cancelled when they end, before `close`.
    """

    on_results: Callable[[list[Result], RunStats], None] = lambda _r, _s: None
    close: Callable[[RunStats], None] = lambda _s: None
    background: Callable[[], Coroutine[Any, Any, None]] | None = None


class _Recorder:
    """Writes each batch, counts what reached the report, and turns a write error into a graceful stop."""

    def __init__(self, writer: ReportWriter, stats: RunStats, observer: Observer) -> None:
        self.writer = writer
        self.stats = stats
        self.observer = observer

    def record(self, batch: list[Result], run: Run) -> None:
        """Write `batch` (synchronous: also usable while the run is being cancelled)."""
        stats = self.stats
        if stats.write_error is not None:
            stats.unrecorded += len(batch)
            return
        try:
            self.writer.write_many(batch)
        except ReportError as exc:
            stats.write_error = str(exc)
            stats.unrecorded += len(batch)
            log.warning("bulkops.report.write_failed", error=str(exc), unrecorded=len(batch))
            run.wind_down()
            return
        for result in batch:
            stats.tally(result)
        self.observer.on_results(batch, stats)

    async def sync_if_due(self) -> None:
        """fsync the report off the event loop, at most once per the writer's interval."""
        if self.writer.sync_due():
            await anyio.to_thread.run_sync(self.writer.sync)


async def _next_batch(results: AsyncIterator[Result], run: Run) -> list[Result] | None:
    """The next results: waits for one, takes what else is ready; None when the engine closed the stream.

    The wait is shielded. An abort cancels the engine, whose tasks then close the stream; until then this
    keeps taking results, so that none is dropped in hand (a result handed to a cancelled receiver is lost)
    and everything the engine finished is written.
    """
    with anyio.CancelScope(shield=True):
        try:
            first = await anext(results)
        except StopAsyncIteration:
            return None
    return [first, *run.take_ready()]


@asynccontextmanager
async def _alongside(background: Callable[[], Coroutine[Any, Any, None]] | None) -> AsyncIterator[None]:
    """Run `background` as a task for the length of the block, then cancel it; no task group without one."""
    if background is None:
        yield
        return
    async with anyio.create_task_group() as tg:
        tg.start_soon(background)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def _shared_limits(redis_url: str | None, options: Options) -> AsyncIterator[LimiterFactory | None]:
    """The limiter shared through Redis when `redis_url` is given (redis-py is imported only then)."""
    if redis_url is None:
        yield None
        return
    from bulkops.redis.limiter import share_limits

    async with share_limits(redis_url, options) as limiter:
        yield limiter


async def run_stop(
    items: Iterable[Target | Result],
    options: Options,
    writer: ReportWriter,
    *,
    resume: ResumeState | None = None,
    observer: Observer | None = None,
    summary_stream: TextIO | None = None,
    handle_signals: bool = True,
    interrupts: Interrupts | None = None,
    summary: Callable[[RunStats], None] | None = None,
    redis_url: str | None = None,
) -> RunStats:
    """Run the stop, writing every result to `writer`; returns the final counters.

    Signals are handled through `interrupts` (the command line's, installed when it started); with
    `handle_signals` and none given, handlers are installed for the length of the run. `summary`, when
    given, writes the summary instead of its plain text on `summary_stream` (see `bulkops.cli.runlog`).
    `redis_url`: share the rate limits with every run naming that Redis (`bulkops.redis.share_limits`).
    """
    observer = observer or Observer()
    stats = RunStats(tallied_by_writer=True, command=options.operation.name)
    recorder = _Recorder(writer, stats, observer)
    own = None
    if handle_signals and interrupts is None:
        interrupts = own = Interrupts()
        own.install()
    try:
        with anyio.CancelScope() as scope:  # cancelled by an abort: the engine's tasks end at once
            async with (
                _shared_limits(redis_url, options) as limiter,
                stop_instances(items, options, resume=resume, stats=stats, limiter=limiter) as run,
            ):
                if interrupts is not None:
                    interrupts.attach(
                        on_interrupt=lambda _: run.wind_down(), on_abort=lambda _: scope.cancel()
                    )
                results = aiter(run)
                async with _alongside(observer.background):
                    while (batch := await _next_batch(results, run)) is not None:
                        recorder.record(batch, run)
                        with anyio.CancelScope(shield=True):
                            await recorder.sync_if_due()
        stats.interrupted = stats.interrupted or (interrupts is not None and interrupts.received)
    finally:
        if interrupts is not None:
            interrupts.detach()
        if own is not None:
            own.uninstall()
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(writer.close)
        observer.close(stats)
        if summary is not None:
            summary(stats)
        else:
            out = summary_stream if summary_stream is not None else sys.stderr
            print(stats.render(), file=out, flush=True)
    return stats
