"""Dispatch: the dispatcher task and the worker tasks' loop, with at most `concurrency` rows in flight.

The dispatcher waits for an idle worker (a permit of `idle`) before it takes a row from the work source,
so a send slot is never spent on a row that then queues behind the concurrency cap; it hands rows over
through a stream of `concurrency` places. A worker that finished a row takes the next ready one straight
from the work source (`_take_ready`), keeping its permit: no hand-over through the dispatcher, which
would cost two trips through the event loop per request when the run is CPU-bound. The work source still
decides which row goes (fairness and rates are its alone).

Imports `clock` and `engine.jobs`, `engine.seams`, `engine.worker`.
"""

from __future__ import annotations

import asyncio

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from bulkops.clock import Clock
from bulkops.engine.jobs import Flow, Job
from bulkops.engine.seams import WorkSource
from bulkops.engine.worker import Worker

MAX_TICK = 0.05  # the longest the dispatcher sleeps before it looks at the work source again


class Dispatch:
    """The dispatcher (`dispatch`) and the worker loop (`work`) over one work source."""

    def __init__(self, source: WorkSource, worker: Worker, flow: Flow, clock: Clock) -> None:
        self.source = source
        self.worker = worker
        self.flow = flow
        self.clock = clock
        self.active_workers = 0
        self.workers_done = anyio.Event()

    # -- dispatcher -------------------------------------------------------------------------------------

    async def dispatch(self, jobs: MemoryObjectSendStream[Job], idle: anyio.Semaphore) -> None:
        flow = self.flow
        async with jobs:
            while not flow.winding_down:
                await idle.acquire()
                job = await self._next_job()
                if job is None:
                    idle.release()
                    return
                flow.inflight += 1
                await _hand_over(jobs, job)
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
                    await _hand_over(jobs, ready)

    async def _next_job(self) -> Job | None:
        flow = self.flow
        source = self.source
        clock = self.clock
        while not flow.winding_down:
            popped = source.take(clock.monotonic())
            if popped is None:
                if flow.inflight == 0 and source.exhausted:
                    return None
                await flow.wait_notified()
            elif isinstance(popped, float):
                await clock.sleep(min(popped, MAX_TICK))
            else:
                return popped
        return None

    def _take_ready(self) -> Job | None:
        """A job the work source lets go now (its slot taken), counted in flight; None if none is."""
        flow = self.flow
        if flow.winding_down:
            return None
        popped = self.source.take(self.clock.monotonic())
        if not isinstance(popped, Job):
            return None
        flow.inflight += 1
        return popped

    # -- workers ----------------------------------------------------------------------------------------

    async def work(self, jobs: MemoryObjectReceiveStream[Job], idle: anyio.Semaphore) -> None:
        worker = self.worker
        flow = self.flow
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
                    next_job: Job | None = job
                    try:
                        while next_job is not None:
                            try:
                                await worker.handle(next_job)
                            except Exception as exc:  # one row's failure (a bug, no file descriptors)
                                await worker.internal_error(next_job, exc)
                            finally:
                                flow.inflight -= 1
                                flow.notify()
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


async def _hand_over(jobs: MemoryObjectSendStream[Job], job: Job) -> None:
    try:
        jobs.send_nowait(job)  # room is certain: at most `concurrency` jobs hold an idle permit
    except anyio.WouldBlock:
        await jobs.send(job)
