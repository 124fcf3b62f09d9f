"""The engine's three seams: where its limits, its work and its results come from and go to.

    work source ──job──► worker ──► client ──► API         (the limiter gives each send its slot)
        ▲  push_later / push_front  │
        └───────────────────────────┤
                                    └──final record──► result sink (exactly once per row)

Each is a `typing.Protocol` with today's behaviour as its local implementation:

* `Limiter`: `limits.LocalLimiter`, per-project token buckets learning from 429s, and the global bucket.
  The shared one (`bulkops.redis.SharedLimiter`, issue 14) sits over the local one: `admit` reserves
  each send's slot in Redis (one round trip) and sleeps until it comes; `learn` publishes what a 429
  taught. `stop_instances(..., limiter=...)` chooses; the rooms between do not know which they have.
* `WorkSource`: `admission.Admission`, the CSV/stdin reader feeding the fair `Scheduler` and the
  on-disk `Overflow`. The local source asks the local limiter's buckets itself (the fair choice among
  projects needs every project's wait without reserving a slot), so `take` returns a row whose slot is
  already taken; the worker then `admit`s the request (a no-op locally).
* `ResultSink`: `report.ReportWriter`, fed by `runner` from the run's results stream (`Run.batches`).

A work source that `stop_instances(..., source=...)` plugs in is a `Feeder`: a `WorkSource` with the
lifecycle the run drives (`read` as the intake task, `wake_reader` on a wind-down, `close`, `queued` for
the log). `admission.Admission` is the local one; `bulkops.job.source.JobSource` (issue 15) claims rows
from Redis streams instead of reading an input.

Imports only `models` and `engine.jobs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from bulkops.engine.jobs import Job, Targets
from bulkops.models import Reply, Result


class Limiter(Protocol):
    """Send slots for (credential, project); the credential is the limiter's own (one per run)."""

    async def admit(self, project_id: str) -> None:
        """Called just before a request of `project_id` is sent, its local slot already taken (the work
        source's): returns when it may go. The local limiter returns at once; a shared one reserves the
        slot among every runner (one round trip) and sleeps until it comes."""
        ...

    def learn(self, project_id: str, reply: Reply, *, throttled: bool, sent: float, now: float) -> None:
        """Learn from the answer to a request sent at `sent` (a success, a 429 and its hint, a
        `Retry-After`): the next slots of the project (or of the credential) come at that pace."""
        ...

    def learned_rates(self) -> dict[str, float]:
        """The rates learned from the gateway and in use now, by project (`*`: the credential's)."""
        ...


class WorkSource(Protocol):
    """Rows to send, fairly over projects; rows given back to be sent again later."""

    @property
    def exhausted(self) -> bool:
        """True when no row will come any more (the input is read and nothing waits)."""
        ...

    def take(self, now: float) -> Job | float | None:
        """The next row to send now (its send slot taken), or the seconds to wait, or None: nothing
        queued now (more may come: wait to be notified)."""
        ...

    def push_later(self, job: Job, at: float) -> None:
        """Send `job` again at `at` or later (a retry after its backoff, a poll), before fresh rows."""
        ...

    def push_front(self, job: Job, now: float) -> None:
        """Send `job` again as soon as its project may (a throttled row keeps its place)."""
        ...

    def give_up(self, project_id: str, code: str, why: str) -> list[Job]:
        """No row of `project_id` is sent any more: returns the rows it still held; later ones are
        recorded as skipped with `code` and `why` as they come."""
        ...

    def give_up_all(self, code: str, why: str) -> list[Job]:
        """No row is sent any more (the endpoint is unreachable): returns every row still held; later
        ones are recorded as skipped with `code` and `why` as they come."""
        ...


class Feeder(WorkSource, Protocol):
    """A work source with the lifecycle `stop_instances` drives."""

    async def read(self, targets: Targets) -> None:
        """The intake task: bring rows in until there are no more or the run winds down (cancelled then)."""
        ...

    def wake_reader(self) -> None:
        """The run winds down: a reader waiting for room looks again (and stops)."""
        ...

    def close(self) -> None:
        """The run is over: let go of what the source holds (files, connections)."""
        ...

    def queued(self) -> int:
        """Rows held and not yet sent (for the wind-down's log line)."""
        ...


class ResultSink(Protocol):
    """Where final records go, each exactly once (`report.ReportWriter`: JSON lines)."""

    def write_many(self, results: Iterable[Result]) -> None:
        """Record a batch of final records (raises `ReportError` when it cannot)."""
        ...

    def close(self) -> None:
        """Flush what was recorded and let go of the destination."""
        ...
