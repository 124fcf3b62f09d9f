"""One `bulkops stop` run as the command line does it: report file, signals, summary, exit code.

The engine knows nothing of files, terminals or signals; this module wires them around it:

* the report writer consumes the engine's results in batches (one write and one flush per batch);
* SIGINT or SIGTERM once: `Run.stop()` (finish in-flight within the grace period, exit 130);
  a second SIGINT: cancel at once; either way the report is flushed and the summary printed;
* the summary goes to stderr, the exit code follows the contract.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TextIO

import anyio
import structlog

from bulkops.engine import Run, stop_instances
from bulkops.models import Result, Target
from bulkops.options import Options
from bulkops.report import ReportWriter, ResumeState
from bulkops.summary import RunStats

log = structlog.get_logger("bulkops.runner")


@dataclass
class Observer:
    """Hooks for a live display: called with each batch of results, and once at the end."""

    on_results: Callable[[list[Result], RunStats], None] = lambda _r, _s: None
    close: Callable[[RunStats], None] = lambda _s: None


async def _signals(run: Run, scope: anyio.CancelScope, stats: RunStats) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        async for signum in received:
            stats.interrupted = True
            if run.stopping:
                log.warning("bulkops.run.abort", signal=signal.Signals(signum).name)
                scope.cancel()
                return
            log.warning("bulkops.run.interrupt", signal=signal.Signals(signum).name)
            run.stop()


async def run_stop(
    items: Iterable[Target | Result],
    options: Options,
    writer: ReportWriter,
    *,
    resume: ResumeState | None = None,
    observer: Observer | None = None,
    summary_stream: TextIO | None = None,
    handle_signals: bool = True,
) -> RunStats:
    """Run the stop, writing every result to `writer`; returns the final counters."""
    observer = observer or Observer()
    stats = RunStats()
    try:
        async with anyio.create_task_group() as tg:
            async with stop_instances(items, options, resume=resume, stats=stats) as run:
                if handle_signals:
                    tg.start_soon(_signals, run, tg.cancel_scope, stats)
                async for batch in run.batches():
                    writer.write_many(batch)
                    observer.on_results(batch, stats)
            tg.cancel_scope.cancel()
    finally:
        writer.close()
        observer.close(stats)
        out = summary_stream if summary_stream is not None else sys.stderr
        print(stats.render(), file=out, flush=True)
    return stats
