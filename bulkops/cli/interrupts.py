"""SIGINT and SIGTERM for `bulkops stop`: caught from the start of the command, a burst taken as one.

    interrupts = Interrupts(); interrupts.install()     first thing in the command: both signals are caught
    with interrupts.raising(): ...                      before the run: a signal raises KeyboardInterrupt
    interrupts.attach(on_interrupt, on_abort)           during the run: forwarded to the event loop
    interrupts.detach(); interrupts.uninstall()

What a signal means is `Burst.decide`: the first one asks for a graceful stop; any that arrive within
`window` (1 s) of it are the same request (`timeout` sends TERM to the process and to its group, a
terminal's Ctrl-C reaches every process of the group); one that arrives later aborts (in-flight requests
are abandoned, the report is still written); after that, signals are ignored.

Before the run (reading the first row, loading the report to resume, the confirmation prompt) the first
signal raises KeyboardInterrupt in the main thread, whatever it waits on, and the command ends with its
summary and exit 130 having sent nothing. Between phases (the event loop starting, the run closing) a
signal is recorded and acted on as soon as the run attaches. Before `install()` the signals keep their
default effect: the command installs it before it imports anything heavy.
"""

from __future__ import annotations

import contextlib
import enum
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Decision(enum.Enum):
    """What one signal asks for."""

    INTERRUPT = "interrupt"  # the first: a graceful stop
    SAME = "same"  # within the window of the first: already asked
    ABORT = "abort"  # later: end at once
    IGNORED = "ignored"  # after an abort


@dataclass
class Burst:
    """The decision for each signal from its arrival time: pure, so that it is tested on a fake clock."""

    window: float = 1.0
    first: float | None = None
    aborted: bool = False

    def decide(self, now: float) -> Decision:
        """The meaning of a signal that arrives at `now` (monotonic seconds)."""
        if self.first is None:
            self.first = now
            return Decision.INTERRUPT
        if self.aborted:
            return Decision.IGNORED
        if now - self.first < self.window:
            return Decision.SAME
        self.aborted = True
        return Decision.ABORT


class _Phase(enum.Enum):
    RAISING = "raising"
    RECORDING = "recording"
    FORWARDING = "forwarding"


Callback = Callable[[str], None]


class Interrupts:
    """Signal handlers for one command: see the module docstring."""

    def __init__(self, *, window: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = Burst(window)
        self._clock = clock
        self._phase = _Phase.RECORDING
        self._pending: list[tuple[str, Decision]] = []
        self._previous: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_interrupt: Callback | None = None
        self._on_abort: Callback | None = None

    @property
    def received(self) -> bool:
        """True once a signal arrived."""
        return self.burst.first is not None

    def install(self) -> None:
        """Catch SIGINT and SIGTERM from now on (main thread only)."""
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self, *, exiting: bool = False) -> None:
        """Give SIGINT and SIGTERM back their earlier handlers.

        With `exiting` (the command is on its way out) and a signal received, the rest of the burst
        (`timeout`'s second TERM, which may land after the run already wound down) is ignored instead, so it
        cannot kill the process between the summary and exit 130.
        """
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_IGN if exiting and self.received else previous)
        self._previous.clear()

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """Within the block, the first signal raises KeyboardInterrupt (a signal that came before, too)."""
        if self.received:
            raise KeyboardInterrupt
        self._phase = _Phase.RAISING
        try:
            yield
        finally:
            self._phase = _Phase.RECORDING

    def attach(self, on_interrupt: Callback, on_abort: Callback) -> None:
        """Forward signals to the running loop's callbacks; signals already received are acted on now."""
        import asyncio  # here, not at the top: the module is imported first thing at start-up, and light

        self._loop = asyncio.get_running_loop()
        self._on_interrupt, self._on_abort = on_interrupt, on_abort
        self._phase = _Phase.FORWARDING
        pending, self._pending = self._pending, []
        for name, decision in pending:
            self._deliver(name, decision)

    def detach(self) -> None:
        """Stop forwarding: later signals are only recorded."""
        self._phase = _Phase.RECORDING
        self._loop = self._on_interrupt = self._on_abort = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """The handler: runs in the main thread between two bytecodes, so it only decides and hands on."""
        name = signal.Signals(signum).name
        decision = self.burst.decide(self._clock())
        if self._phase is _Phase.RAISING and decision is Decision.INTERRUPT:
            self._phase = _Phase.RECORDING  # a second signal must not raise again while this one unwinds
            raise KeyboardInterrupt
        loop = self._loop
        if self._phase is _Phase.FORWARDING and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed in between: nothing left to stop
                loop.call_soon_threadsafe(self._deliver, name, decision)
            return
        self._pending.append((name, decision))

    def _deliver(self, name: str, decision: Decision) -> None:
        import structlog

        log = structlog.get_logger("bulkops.runner")
        if decision is Decision.INTERRUPT and self._on_interrupt is not None:
            log.warning("bulkops.run.interrupt", signal=name)
            self._on_interrupt(name)
        elif decision is Decision.ABORT and self._on_abort is not None:
            log.warning("bulkops.run.abort", signal=name)
            self._on_abort(name)
        else:
            log.info("bulkops.run.signal_merged", signal=name, decision=decision.value)


_early: list[Interrupts] = []  # at most one: the handlers `install_early` put in place


def install_early() -> None:
    """Catch SIGINT/SIGTERM now, before the command line is even parsed (`bulkops.cli.entry`, for `stop`)."""
    if not _early:
        early = Interrupts()
        early.install()
        _early.append(early)


def take_early() -> Interrupts | None:
    """The handlers `install_early` put in place, for the command to use (once), or None."""
    return _early.pop() if _early else None
