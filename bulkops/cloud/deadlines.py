"""Attempt deadlines: one sweeping timer for every request in flight, not a timer each.

Why. aiohttp's own total timeout arms a timer per request (a `TimeoutHandle`, a `TimerContext`, a
`call_at` and its cancel): about 8 us a request, 3 % of bulkops' CPU per request when the run is CPU-bound
(`benchmarks/`, `cpu-50ms`). Every attempt here has the same timeout, so deadlines fall in the order the
attempts started: one callback, every `period`, cancels the attempts at the front of that queue whose
deadline has passed, and stops at the first that has not. Arming and releasing an attempt is a dict insert
and delete.

How a deadline cancels. The same way aiohttp's timer does: `task.cancel()` on the task that is waiting for
the answer, then `task.uncancel()` where the `CancelledError` is caught (`release`). If anything else
cancelled the task too (a cancel scope, a shutdown), the task is still cancelling after that uncancel and
the `CancelledError` goes on; only a cancellation that is the deadline's alone becomes a timeout.

What this leans on in anyio (4.16), and why it is pinned. A deadline cancels with asyncio's own
`task.cancel()` inside anyio task groups, so it is correct only while anyio keeps doing three things:
  * it marks a scope's cancellation with its own message ("Cancelled via cancel scope ...") and swallows
    only a `CancelledError` that carries it: a deadline's bare `cancel()` is never taken for a scope's (and
    `sweep` leaves a task alone that something else is already cancelling, not to overwrite that message);
  * it does not cancel a task whose cancellation is already under way (`_must_cancel` set, or the future
    it waits on already cancelled) but delivers the scope's cancellation again on the next loop turn, until
    the task has left the scope: so a scope cancelled in the same turn as a deadline still ends the task at
    its next await, after the attempt became a timeout reply;
  * on leaving a scope it compares `task.cancelling()` with its value on entry: `release()` undoes the
    deadline's request with `uncancel()`, so the count is back where the scope expects it.
tests/test_deadlines.py pins these where they show (a scope and a deadline in the same turn, on a task
waiting on a bare yield and on a future, in a task group; a deadline in a task group is a timeout reply
and cancels nothing else). If anyio changes them and those tests fail, time attempts out with anyio's own
scopes instead (a `CancelScope` with a deadline per attempt), and pay the timer per request.

Resolution. A deadline fires within `period` after it passed: a twentieth of the timeout, between 5 ms
and 250 ms (a 30 s timeout fires between 30.0 and 30.25 s).
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class _Cancellable(Protocol):
    """The part of `asyncio.Task` a deadline uses (a test double is enough)."""

    def cancel(self, msg: object = ...) -> bool: ...

    def uncancel(self) -> int: ...

    def cancelling(self) -> int: ...


class Attempt:
    """One armed request: its task, its deadline, and whether the deadline cancelled it (until undone)."""

    __slots__ = ("cancelling", "deadline", "fired", "task")

    def __init__(self, task: _Cancellable, deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.cancelling = task.cancelling()  # cancellations already pending when it was armed
        self.fired = False


class Deadlines:
    """Deadlines for attempts that all share one timeout; see the module docstring."""

    def __init__(self, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.period = max(0.005, min(0.25, timeout / 20))
        self._live: dict[Attempt, None] = {}  # insertion order is deadline order
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._live)

    def arm(self, task: _Cancellable | None = None, now: float | None = None) -> Attempt:
        """Start the clock for the current task's attempt (or `task`'s, at `now`, for tests)."""
        if task is None:
            task = asyncio.current_task()
            if task is None:
                raise RuntimeError("Deadlines.arm() outside a task")
        if now is None:
            loop = asyncio.get_running_loop()
            if loop is not self._loop:  # first use, or a client reused under a new event loop
                self.close()
                self._loop = loop
            now = loop.time()
            if self._handle is None:
                self._handle = loop.call_at(now + self.period, self._tick, loop)
        attempt = Attempt(task, now + self.timeout)
        self._live[attempt] = None
        return attempt

    def release(self, attempt: Attempt) -> bool:
        """Forget `attempt`. True only the first time, and only when its deadline cancelled the task and
        nothing else did: the caller then reports a timeout instead of letting `CancelledError` go on."""
        self._live.pop(attempt, None)
        if not attempt.fired:
            return False
        attempt.fired = False  # its cancel is undone here, once
        return attempt.task.uncancel() <= attempt.cancelling

    def sweep(self, now: float) -> int:
        """Cancel every attempt whose deadline is at or before `now`; returns how many.

        An attempt whose task something else is already cancelling (a cancel scope, a shutdown) is only
        forgotten: that cancellation ends it anyway, and a second `cancel()` would replace its message,
        by which anyio knows a cancellation for its own.
        """
        expired: list[Attempt] = []
        for attempt in self._live:
            if attempt.deadline > now:
                break
            expired.append(attempt)
        fired = 0
        for attempt in expired:
            del self._live[attempt]
            if attempt.task.cancelling() > attempt.cancelling:
                continue
            attempt.fired = True
            attempt.task.cancel()
            fired += 1
        return fired

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:  # a timer left on an event loop this client no longer runs on
            return
        now = loop.time()
        self.sweep(now)
        # Idle (nothing in flight): no timer at all until the next arm().
        self._handle = loop.call_at(now + self.period, self._tick, loop) if self._live else None

    def close(self) -> None:
        """Stop the sweeping timer and forget every attempt: none is cancelled after this (the client
        closes it when its session closes, with nothing left in flight)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._live.clear()
