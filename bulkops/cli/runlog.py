"""What a run says on stderr when nobody watches a terminal (CI, cron): progress events and the summary.

    summary_printer(mode, report)     the end-of-run summary: plain text, one JSON event, or nothing
    heartbeat_observer(total, ...)    a `bulkops.run.progress` event every `interval` seconds

On a terminal the summary is the plain text of `RunStats.render()` and progress is the redrawn line
(`bulkops.cli.progress`). Off a terminal with JSON logs, stderr is a stream of JSON lines that a log shipper
parses, so plain text in it is noise: the summary becomes one event `bulkops.run.summary` with the figures
of `RunStats.as_dict()` and the report's path, and a `bulkops.run.progress` event (rows done of the total,
rows per second since the last one, outcomes, 429s, retries) comes every `--progress-interval` seconds
(default 30), so that a long run shows it is alive. Both go through `logs.output_logger()`, so the default
`--log-level warning` does not hide them. `--quiet` gives neither: only errors.

The heartbeat runs in a daemon thread (the run's counters are read, never written, from there); a tick
that meets a counter in mid-update skips its turn rather than block the event loop.
"""

from __future__ import annotations

import enum
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from bulkops.cli.runner import Observer
from bulkops.logs import output_logger
from bulkops.summary import RunStats

SUMMARY_EVENT = "bulkops.run.summary"
PROGRESS_EVENT = "bulkops.run.progress"


class SummaryMode(enum.Enum):
    """How the end-of-run summary is written."""

    TEXT = "text"
    JSON = "json"
    NONE = "none"


def summary_mode(*, log_format: str, quiet: bool, tty: bool | None = None) -> SummaryMode:
    """NONE with --quiet; JSON off a terminal with JSON logs; TEXT otherwise."""
    if quiet:
        return SummaryMode.NONE
    on_tty = sys.stderr.isatty() if tty is None else tty
    return SummaryMode.JSON if log_format == "json" and not on_tty else SummaryMode.TEXT


def summary_printer(mode: SummaryMode, report: str | None) -> Callable[[RunStats], None]:
    """The runner's summary hook for `mode`; `report` is the report's path (None: standard output)."""

    def text(stats: RunStats) -> None:
        click.echo(stats.render(), err=True)

    def as_json(stats: RunStats) -> None:
        headline = stats.render().splitlines()[0]  # "bulkops stop: 12 rows in 1.0s (interrupted: ...)"
        output_logger().info(
            SUMMARY_EVENT, headline=headline, report=report, exit_code=stats.exit_code(), **stats.as_dict()
        )

    def nothing(_stats: RunStats) -> None:
        return None

    return {SummaryMode.TEXT: text, SummaryMode.JSON: as_json, SummaryMode.NONE: nothing}[mode]


class Heartbeat:
    """Emits `bulkops.run.progress` every `interval` seconds of a run (`tick` is the ticker's call)."""

    def __init__(
        self,
        total: int | None,
        interval: float,
        *,
        emit: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.interval = interval
        self.clock = clock
        self.emit = emit if emit is not None else output_logger().info
        self.stats: RunStats | None = None
        self.started = clock()
        self._last = (self.started, 0)

    def on_results(self, _batch: object, stats: RunStats) -> None:
        """The runner's hook: remember the counters (the ticker reads them)."""
        self.stats = stats

    def tick(self) -> None:
        """One progress event with the figures as they are now."""
        stats = self.stats if self.stats is not None else RunStats(started=self.started)
        now = self.clock()
        try:
            outcomes = dict(stats.outcomes)
        except RuntimeError:  # the counter changed size while it was copied: next time
            return
        done = stats.rows + stats.resumed_skips
        then, done_then = self._last
        self._last = (now, done)
        span = now - then
        self.emit(
            PROGRESS_EVENT,
            done=done,
            total=self.total,
            rows_per_s=round((done - done_then) / span, 1) if span > 0 else None,
            elapsed_s=round(now - self.started, 1),
            outcomes=dict(sorted(outcomes.items())),
            requests=stats.requests,
            throttled=stats.throttled,
            retries=stats.retries,
        )


def heartbeat_observer(total: int | None, interval: float) -> Observer:
    """The heartbeat as the runner's Observer: a daemon thread ticks every `interval` seconds until close."""
    beat = Heartbeat(total, interval)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                beat.tick()
            except Exception:  # a log glitch must never end a run
                return

    thread = threading.Thread(target=loop, name="bulkops-heartbeat", daemon=True)

    def close(_stats: RunStats) -> None:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=1.0)

    thread.start()
    return Observer(on_results=beat.on_results, close=close)
