"""The clock every timed part of bulkops reads: real in production, fake and stepped by hand in tests.

    Clock        the protocol: `monotonic()` and `await sleep(seconds)`
    SystemClock  time.monotonic and anyio.sleep
    FakeClock    time moves only when told: `advance(seconds)`, `advance_to(t)`, or the autojump helper

`FakeClock.sleep` parks the caller on an `anyio.Event` until the fake time reaches its deadline; sleepers are
kept in a heap ordered by (deadline, arrival), so equal deadlines wake in the order they went to sleep.

`FakeClock.autojumping()` runs a helper task that, whenever the other tasks look blocked, jumps the fake
time to the earliest pending deadline, so that a whole engine run against an in-process server finishes in
real milliseconds while every timed decision (rate, backoff, timeout) happens in fake seconds. "Look
blocked" is a heuristic, and its limits are real:

* The helper yields `settle` times (default 50) to the event loop and jumps only if no task went to sleep,
  woke, or called `FakeClock.sleep(0)` in the meantime. A task that keeps running through more than
  `settle` loop iterations without touching the clock (a busy loop on `anyio.sleep(0)`, a long chain of
  callbacks) can be jumped past.
* Work the loop cannot see as ready is invisible: a thread (e.g. `getaddrinfo` for a host name, file I/O
  in a worker thread) or a socket whose bytes have not arrived yet. On 127.0.0.1 one loop iteration usually
  suffices, but nothing guarantees it: pass `quiet` (a few real milliseconds) to also wait real time before
  each jump, and prefer IP literals so that no resolver thread runs.
* Only `FakeClock.sleep` is jumped. Timeouts the loop measures itself (`anyio.fail_after`, aiohttp's
  `ClientTimeout`) run on real time and are not affected.

Because of these limits, tests of timing logic should step the clock by hand (or call the pure parts with
explicit `now` values); use autojump for end-to-end tests whose assertions do not depend on the exact
interleaving.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator
from typing import Protocol

import anyio
import anyio.lowlevel

#: A sleeper whose deadline is this close to the fake time is due (so 14.999 + 0.001 reaches 15.0).
_TOLERANCE = 1e-9


class Clock(Protocol):
    """A monotonic time source and a way to wait on it."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock (return at once, after a checkpoint, for zero or less)."""
        ...


class SystemClock:
    """The real clock: `time.monotonic()` and `anyio.sleep()`."""

    __slots__ = ()

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """`anyio.sleep(seconds)`."""
        await anyio.sleep(max(0.0, seconds))


class _Sleeper:
    __slots__ = ("deadline", "event", "woken")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.event = anyio.Event()
        self.woken = False


class FakeClock:
    """A clock that moves only when told to. `now` starts at `start` (default 0.0)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)
        self._heap: list[tuple[float, int, _Sleeper]] = []
        self._seq = itertools.count()
        self._waiting = 0
        #: Bumped whenever a task goes to sleep or is woken; the autojump helper watches it.
        self._generation = 0
        self._registered: anyio.Event | None = None

    def monotonic(self) -> float:
        """The fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Return once the fake time has reached now + `seconds`; a checkpoint only, for zero or less."""
        if seconds <= 0:
            self._generation += 1  # progress, as far as autojump can tell
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(self.now + seconds)
        heapq.heappush(self._heap, (sleeper.deadline, next(self._seq), sleeper))
        self._waiting += 1
        self._generation += 1
        if self._registered is not None:
            self._registered.set()
        try:
            await sleeper.event.wait()
        finally:
            if not sleeper.woken:  # cancelled: the heap entry is dropped lazily
                sleeper.woken = True
                self._waiting -= 1

    def advance(self, seconds: float) -> None:
        """Move the time forward by `seconds` and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError(f"time cannot go backwards ({seconds!r} s)")
        self.advance_to(self.now + seconds)

    def advance_to(self, when: float) -> None:
        """Move the time forward to `when` (no-op if already later) and wake the sleepers that are due."""
        self.now = max(self.now, when)
        while self._heap and self._heap[0][0] <= self.now + _TOLERANCE:
            deadline, _, sleeper = heapq.heappop(self._heap)
            if not sleeper.woken:
                self.now = max(self.now, deadline)  # a woken sleeper never sees a time before its deadline
                sleeper.woken = True
                self._waiting -= 1
                self._generation += 1
                sleeper.event.set()

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock."""
        return self._waiting

    def next_deadline(self) -> float | None:
        """The earliest deadline of a sleeping task, or None when no task sleeps."""
        while self._heap and self._heap[0][2].woken:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    async def autojump(self, *, settle: int = 50, quiet: float = 0.0) -> None:
        """Forever: when the other tasks look blocked, jump to the earliest deadline. Cancel to stop.

        See the module docstring for what "look blocked" means and what it cannot see.
        """
        while True:
            generation = self._generation
            for _ in range(settle):
                await anyio.lowlevel.checkpoint()
            if quiet > 0:
                await anyio.sleep(quiet)  # real time: lets threads and sockets deliver
            if generation != self._generation:
                continue  # something moved: settle again
            deadline = self.next_deadline()
            if deadline is None:
                self._registered = anyio.Event()
                await self._registered.wait()
                self._registered = None
                continue
            self.advance_to(deadline)

    @contextlib.asynccontextmanager
    async def autojumping(self, *, settle: int = 50, quiet: float = 0.0) -> AsyncIterator[FakeClock]:
        """Run `autojump` in the background for the body of an `async with`."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: self.autojump(settle=settle, quiet=quiet))
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()
