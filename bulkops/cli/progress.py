"""Progress on a terminal: one line on stderr, redrawn in place, never torn by log lines.

    1834/4800 38% [######........] 61.2/s ETA 48s | accepted 1700 already 120 failed 14 | 429s 23 retries 31

What it shows: rows done of the total (the total is counted cheaply up front for a file, unknown for
standard input), the rate over the last few seconds, the time left at that rate, rows per outcome, and the
429s and retries so far. Segments that do not fit the terminal's width are dropped, the bar first.

Decisions:
* One line, redrawn with `\\r` + clear-to-end-of-line, at most once every `interval` seconds (0.1 s), so
  a run finishing thousands of rows a second costs a few redraws, not one per batch.
* The line is kept three columns short of the terminal width: writing the last column makes many
  terminals wrap, and the `^C` a terminal echoes after the bar on Ctrl-C must fit on the same line, or
  `\\r` no longer returns to the start of the bar and a stale copy of it is left on screen.
* Log lines go through the `LineWriter` that `logs.configure()` returns; the display replaces its
  `write_line` so that a log line first clears the bar, prints itself on its own line, and the bar is
  redrawn under it. One lock orders the two writers.
* A task on the run's event loop (the runner's `Observer.background`) redraws once every `idle_interval`
  seconds when no results arrive (e.g. every project waiting on its rate limit, or `--wait` polls pending),
  so the elapsed time and rate stay honest. Being on the loop, it reads the run's counters between two
  steps of the engine, never halfway through an update, as a thread could.
* `close()` clears the line and puts `write_line` back, so the summary starts on a clean line on success,
  failure and Ctrl-C alike (the runner calls it in a `finally`).
* Only the CLI creates it, and only when stderr is a terminal (or `--progress`): nothing of it is written
  off a TTY. This module is imported lazily: `import bulkops` and `bulkops --help` never load it.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

import anyio

from bulkops.logs import LineWriter
from bulkops.cli.runner import Observer
from bulkops.summary import RunStats
from bulkops.wording import counted

CLEAR = "\r\x1b[K"
_LABELS = {
    "accepted": "accepted",
    "already_stopped": "already",
    "stopped": "stopped",
    "not_found": "not_found",
    "failed": "failed",
    "invalid": "invalid",
    "skipped": "skipped",
    "already_running": "already",
    "running": "running",
}
_RATE_WINDOW = 10.0
_MIN_BAR = 10


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal behind `stream` (stderr), else of the process, else 80."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size((80, 24)).columns


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def render_line(
    done: int, total: int | None, rate: float | None, stats: RunStats, width: int, elapsed: float
) -> str:
    """The progress line for `width` columns (at most `width - 3` characters)."""
    room = max(10, width - 3)
    if total is not None:
        total = max(total, done)
        pct = 100 * done // total if total else 100
        head = f"{done}/{total} {pct}%"
    else:
        head = counted(done, "row")
    speed = f"{rate:.1f}/s" if rate is not None else "-/s"
    if total is not None and rate:
        eta = f"ETA {_duration((total - done) / rate)}"
    elif total is not None and done >= total:
        eta = "ETA 0s"
    else:
        eta = f"{_duration(elapsed)} elapsed"
    outcomes = dict(stats.outcomes)
    order = [*_LABELS, *sorted(set(outcomes) - set(_LABELS))]
    counts = " ".join(f"{_LABELS.get(k, k)} {outcomes[k]}" for k in order if outcomes.get(k))
    traffic = f"429s {stats.throttled} retries {stats.retries}"
    if stats.polls_sent:  # --wait: rows are done only once STOPPED; show that the polling goes on
        traffic += f" polls {stats.polls_sent}"
    learned = stats.learned_rates
    slowed = ""
    if learned:  # the slowest learned rate and how many projects run below --rate
        project, slowest = min(learned.items(), key=lambda kv: kv[1])
        slowed = f"slowed {len(learned)} ({project[:8]} {slowest:.3g}/s)"
    # Lowest priority first: drop from the front until the line fits.
    optional = [slowed, traffic, counts]
    while True:
        parts = [head, speed, eta]
        line = " ".join(parts)
        tail = " | ".join(p for p in reversed(optional) if p)
        full = f"{line} | {tail}" if tail else line
        if len(full) <= room or not optional:
            break
        optional.pop(0)
    if len(full) > room:
        return full[:room]
    spare = room - len(full) - 3  # " [" + "]"
    if total is not None and spare >= _MIN_BAR:
        inner = min(spare, 40)
        filled = inner * done // total if total else inner
        bar = f"[{'#' * filled}{'.' * (inner - filled)}]"
        head_end = len(head)
        full = f"{full[:head_end]} {bar}{full[head_end:]}"
    return full


class Progress:
    """The live display. `on_results` and `close` are the runner's `Observer` hooks."""

    def __init__(
        self,
        total: int | None,
        *,
        stream: TextIO | None = None,
        log_writer: LineWriter | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: Callable[[], int] | None = None,
        interval: float = 0.1,
    ) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.width = width if width is not None else (lambda: terminal_width(self.stream))
        self.interval = interval
        self.started = clock()
        self.last_draw: float | None = None
        self.shown = False
        self.closed = False
        self.stats: RunStats | None = None
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.RLock()
        self._log_writer = log_writer
        self._plain_write: Callable[[str], None] | None = None
        if log_writer is not None:
            self._plain_write = log_writer.write_line
            log_writer.write_line = self.write_log_line

    # -- Observer hooks ---------------------------------------------------------------------------------

    def on_results(self, _batch: object, stats: RunStats) -> None:
        """A batch of results arrived: redraw if the last redraw is older than `interval`."""
        self.stats = stats
        now = self.clock()
        with self._lock:
            self._sample(now, self._done(stats))
        if self.last_draw is None or now - self.last_draw >= self.interval:
            self.redraw(now)

    def close(self, stats: RunStats) -> None:
        """End the display: clear the line and give log lines back their plain writer."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self.stats = stats
            self._clear()
            self.stream.flush()
            if self._log_writer is not None and self._plain_write is not None:
                self._log_writer.write_line = self._plain_write

    # -- drawing ----------------------------------------------------------------------------------------

    def redraw(self, now: float | None = None) -> None:
        """Draw the current line (unconditionally)."""
        with self._lock:
            if self.closed:
                return
            now = self.clock() if now is None else now
            self.last_draw = now
            self.stream.write(CLEAR + self.line(now))
            self.stream.flush()
            self.shown = True

    def idle_tick(self) -> None:
        """Redraw when nothing was drawn for a while (called by `redraw_while_idle`)."""
        now = self.clock()
        if self.last_draw is None or now - self.last_draw >= 4 * self.interval:
            self.redraw(now)

    def line(self, now: float) -> str:
        """The line as it would be drawn now."""
        stats = self.stats if self.stats is not None else RunStats(started=self.started)
        done = self._done(stats)
        return render_line(done, self.total, self._rate(now, done), stats, self.width(), now - self.started)

    def write_log_line(self, text: str) -> None:
        """The wrapped `LineWriter.write_line`: clear the bar, print the log line, redraw the bar."""
        with self._lock:
            was_shown = self.shown
            self._clear()
            assert self._plain_write is not None
            self._plain_write(text)
            if was_shown and not self.closed:
                self.redraw()

    def _clear(self) -> None:
        if self.shown:
            self.stream.write(CLEAR)
            self.shown = False

    # -- figures ----------------------------------------------------------------------------------------

    @staticmethod
    def _done(stats: RunStats) -> int:
        return stats.rows + stats.resumed_skips

    def _sample(self, now: float, done: int) -> None:
        samples = self._samples
        samples.append((now, done))
        while len(samples) > 2 and now - samples[1][0] >= _RATE_WINDOW:
            samples.popleft()

    def _rate(self, now: float, done: int) -> float | None:
        """Rows per second over the last ten seconds or so (since the start, early on)."""
        t0, d0 = self._samples[0] if self._samples else (self.started, 0)
        if now - t0 < 2.0:
            t0, d0 = self.started, 0
        span = now - t0
        return (done - d0) / span if span >= 0.5 else None


async def redraw_while_idle(progress: Progress, period: float) -> None:
    """Give `progress` an idle tick every `period` seconds, on the event loop, until cancelled."""
    while True:
        await anyio.sleep(period)
        try:
            progress.idle_tick()
        except Exception:  # a display glitch must never end a run
            return


def progress_observer(
    total: int | None,
    *,
    log_writer: LineWriter | None = None,
    stream: TextIO | None = None,
    idle_interval: float = 0.5,
) -> Observer:
    """The progress display as the runner's Observer; `total` is None when unknown (standard input)."""
    progress = Progress(total, stream=stream, log_writer=log_writer)
    progress.redraw()
    return Observer(
        on_results=progress.on_results,
        close=progress.close,
        background=lambda: redraw_while_idle(progress, idle_interval),
    )
