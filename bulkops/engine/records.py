"""Final records: built from a job and its last reply, counted, and handed to the results stream.

The one place a `Result` is made for a row that was admitted (`finish`), skipped for an open circuit
(`skip`), or left waiting for a poll when the run wound down (`settle`). The stream is bounded: `emit`
waits when the consumer (the report writer) lags.

Imports `models`, `summary`, `clock`, `validation`, `report` (for `utc_now`), `engine.jobs`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from bulkops.clock import Clock
from bulkops.engine.jobs import Job
from bulkops.models import ALREADY, INVALID_ID, INVALID_PROJECT_ID, Outcome, Result, Target
from bulkops.io.resume import ResumeState, utc_now
from bulkops.summary import RunStats
from bulkops.validation import is_valid_instance_id, is_valid_project_id

__all__ = ["Records", "ResumeState", "validated"]


class Records:
    """Makes and emits final records; holds the jobs that only wait to poll (reported on a wind-down)."""

    def __init__(self, out: MemoryObjectSendStream[Result], stats: RunStats, clock: Clock) -> None:
        self.out = out
        self.stats = stats
        self.clock = clock
        self.awaiting_poll: set[Job] = set()

    async def emit(self, result: Result) -> None:
        self.stats.count(result)
        try:
            self.out.send_nowait(result)  # the common case: room in the buffer, no trip through the loop
        except anyio.WouldBlock:
            await self.out.send(result)  # the consumer lags: wait for it

    async def finish(self, job: Job, outcome: Outcome, overrides: Mapping[str, Any] | None = None) -> None:
        """The job's final record, from its last reply; `overrides` say more where needed."""
        reply = job.last
        now = self.clock.monotonic()
        t = job.target
        elapsed = 0 if job.first_at is None else round((now - job.first_at) * 1000)
        if reply is None:
            status = http_status = error_code = error_msg = request_id = None
        else:
            status, http_status, request_id = reply.status, reply.http_status, reply.request_id
            if outcome.succeeded and outcome not in ALREADY:
                error_code = error_msg = None
            else:
                error_code, error_msg = reply.error_code, reply.error_msg
        result = Result(
            t.line, t.project_id, t.id, outcome, status, http_status, error_code, error_msg, request_id,
            job.attempts, elapsed, utc_now(),
        )  # fmt: skip
        if overrides:  # the rare records that say more than the last reply (skips, budgets, timeouts)
            result = dataclasses.replace(result, **overrides)
        await self.emit(result)

    async def skip(self, job: Job, code: str, why: str) -> None:
        """A row of a project given up on (its circuit is open): recorded without a request."""
        self.awaiting_poll.discard(job)
        if job.polling:
            await self.finish(job, Outcome.ACCEPTED)
            return
        last = job.last
        if last is not None:  # sent before (a retry or a throttled row): failed, with its last answer
            said = f"{last.error_code or last.http_status}: {last.error_msg or ''}"
            overrides = {"error_code": code, "error_msg": f"{why}; last: {said}"[:300]}
            await self.finish(job, Outcome.FAILED, overrides)
            return
        await self.finish(
            job,
            Outcome.SKIPPED,
            {
                "status": None,
                "http_status": None,
                "request_id": None,
                "error_code": code,
                "error_msg": f"not sent: {why}",
            },
        )

    async def settle(self) -> None:
        """After a wind-down: report jobs that were only waiting to poll as accepted."""
        waiting, self.awaiting_poll = self.awaiting_poll, set()
        for job in sorted(waiting, key=lambda j: j.target.line):
            await self.finish(job, Outcome.ACCEPTED)


def validated(target: Target) -> Target | Result:
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
