"""One attempt and its verdict: send (the run's operation, or show when polling), classify the reply, let
the limiter learn from it, ask the policy what follows, and apply the decision (a record, a retry, a poll, a
throttled row back to the front, a denial counted, a project given up).

An exception while handling one row ends that row `failed` (`bulkops.internal_error`), never the run;
with `--wait`, an operation once accepted stays `accepted` whatever its polls meet. The operation
(`options.operation`) is a parameter: bound to the client once (`jobs.sender`), classified by its codes.

401/403 count per project; after `circuit_threshold` in a row, the project's circuit opens: its queued
rows and every later row of it are reported `skipped` (`bulkops.circuit_open`) without a request; a row
already sent (waiting on a retry) is `failed` with its last answer. `--throttle-timeout` of 429s without
a break gives a project up the same way (`bulkops.throttled`).

Imports `outcomes`, `retry`, `redact`, `options`, `clock`, `models`, and `engine.jobs`, `engine.policy`,
`engine.records`, `engine.seams`.
"""

from __future__ import annotations

import random

import structlog

from bulkops.clock import Clock
from bulkops.cloud.outcomes import Action, classify_act, classify_show
from bulkops.engine.jobs import Client, Flow, Job, sender
from bulkops.engine.policy import Budgets, circuit_opens, decide, poll_note
from bulkops.engine.records import Records
from bulkops.engine.retry import Backoff
from bulkops.engine.seams import Limiter, WorkSource
from bulkops.models import (
    CIRCUIT_OPEN,
    CONNECTION_ERROR,
    ENDPOINT_UNREACHABLE,
    INTERNAL_ERROR,
    TLS_ERROR,
    Outcome,
    Reply,
)
from bulkops.options import Options
from bulkops.redact import Redactor

log = structlog.get_logger("bulkops.engine")

#: Requests that could not connect (refused, no such host, TLS) with no answer from the endpoint yet, after
#: which the run stops early: the endpoint circuit (the rest of the rows skipped, not tried 5 times each).
ENDPOINT_CIRCUIT = 10
UNREACHABLE = frozenset({CONNECTION_ERROR, TLS_ERROR})


class Worker:
    """Handles one job at a time for any of the run's worker tasks (it holds no per-task state)."""

    def __init__(
        self,
        options: Options,
        client: Client,
        clock: Clock,
        rng: random.Random,
        source: WorkSource,
        limiter: Limiter,
        records: Records,
        flow: Flow,
    ) -> None:
        self.options = options
        self.client = client
        self.op = options.operation
        self.send = sender(client, self.op)
        self.clock = clock
        self.source = source
        self.limiter = limiter
        self.records = records
        self.stats = records.stats
        self.flow = flow
        self.backoff = Backoff(options.retry, rng)
        self.budgets = Budgets(options)
        self.denials: dict[str, int] = {}
        self.throttled_since: dict[str, float] = {}  # project -> first 429 with no other answer since
        self.given_up: set[str] = set()  # projects whose circuit opened
        self.reached = False  # the endpoint answered (any HTTP status) at least once
        self.unreached = 0  # requests that could not connect before it did
        self.endpoint_down = False  # the endpoint circuit opened: nothing more is sent

    async def handle(self, job: Job) -> None:
        """Send one attempt of `job` and do what its answer calls for."""
        clock = self.clock
        t = job.target
        project_id = job.project_id
        await self.limiter.admit(project_id)  # a shared limiter's slot (a local one's is taken already)
        sent = clock.monotonic()
        if job.first_at is None:
            job.first_at = sent
            self.budgets.get(project_id).on_request()
        stats = self.stats
        records = self.records
        records.awaiting_poll.discard(job)
        op = self.op
        if job.polling:
            reply = await self.client.show(t.project_id, t.id)
            stats.polls_sent += 1
            if reply.status == op.transit:
                job.passed = True
            verdict = classify_show(reply, op, job.passed)
        else:
            reply = await self.send(t.project_id, t.id)
            stats.stops_sent += 1  # the operation's requests (the name is the summary's, from stop)
            if reply.status == op.transit:
                job.passed = True
            verdict = classify_act(op, reply)
        stats.requests += 1
        job.attempts += 1
        job.last = reply
        now = clock.monotonic()
        if reply.http_status is not None:
            self.reached = True
        elif not self.reached and reply.error_code in UNREACHABLE:
            self.unreached += 1
            if self.unreached >= ENDPOINT_CIRCUIT and not self.endpoint_down:
                await self._endpoint_down(reply)
        action = verdict.action
        since: float | None = None
        if action is Action.THROTTLED:
            stats.throttled += 1
            self.limiter.learn(project_id, reply, throttled=True, sent=sent, now=now)
            log.debug("bulkops.stop.throttled", project_id=project_id, id=t.id, attempt=job.attempts)
            since = self.throttled_since.setdefault(project_id, now)
        else:
            if not job.polling:
                job.stop_attempts += 1  # what --max-attempts counts: every stop the server did not throttle
            if self.throttled_since:
                self.throttled_since.pop(project_id, None)
            self.limiter.learn(project_id, reply, throttled=False, sent=sent, now=now)
            if action is Action.DONE or action is Action.PENDING:
                self.denials.pop(project_id, None)
        d = decide(job, verdict, reply, now, self.options, self.backoff, self.budgets, since)
        kind = d.kind
        if self.endpoint_down and kind is not Action.DONE:  # sent, never answered: failed, not tried again
            await records.skip(job, ENDPOINT_UNREACHABLE, self.stats.unreachable or "")
            return
        if kind is Action.DONE:
            if d.refund:
                self.budgets.get(project_id).refund()
            elif d.spend:
                self.budgets.get(project_id).try_spend()  # refused: counted as such
            if d.circuit is not None:
                records.awaiting_poll.discard(job)
            await records.finish(job, d.outcome or Outcome.FAILED, d.overrides)
            if d.deny:
                await self._count_denial(project_id)
            elif d.circuit is not None:
                self.stats.throttled_out.append(project_id)
                await self.give_up(project_id, *d.circuit, "bulkops.throttle.gave_up")
        elif kind is Action.THROTTLED:
            self.source.push_front(job, now)
        elif kind is Action.RETRY:
            job.failures = d.failures
            self.budgets.get(project_id).try_spend()
            self.stats.retries += 1
            log.debug(
                "bulkops.stop.retry",
                project_id=project_id,
                id=t.id,
                attempt=job.attempts,
                delay=round(d.at - now, 3),
                http_status=reply.http_status,
                error_code=reply.error_code,
            )
            self.source.push_later(job, d.at)
        else:  # PENDING: poll later
            if d.refund:
                self.budgets.get(project_id).refund()
            if d.start_polling:
                job.polling = True
                job.poll_started = now
            job.failures = d.failures
            job.polls = d.polls
            records.awaiting_poll.add(job)
            self.source.push_later(job, d.at)

    async def internal_error(self, job: Job, exc: Exception) -> None:
        """An exception escaped one row's handling: the row ends `failed`, the run goes on."""
        log.debug("bulkops.row.internal_error", project_id=job.project_id, id=job.target.id, exc_info=exc)
        self.records.awaiting_poll.discard(job)
        creds = self.options.credentials
        text = f"{type(exc).__name__}: {exc}"
        msg = (Redactor(creds.secrets()).redact(text) if creds else text) or ""
        if job.polling:  # the operation was taken: only its poll failed
            overrides = {"error_code": INTERNAL_ERROR, "error_msg": poll_note(msg, self.op.name)}
            await self.records.finish(job, Outcome.ACCEPTED, overrides)
        else:
            overrides = {"error_code": INTERNAL_ERROR, "error_msg": msg[:300]}
            await self.records.finish(job, Outcome.FAILED, overrides)

    async def _count_denial(self, project_id: str) -> None:
        n = self.denials.get(project_id, 0) + 1
        self.denials[project_id] = n
        if not circuit_opens(n, self.options) or project_id in self.given_up:
            return
        why = f"project {project_id} refused authentication {n} times in a row"
        self.stats.circuits_opened.append(project_id)
        await self.give_up(project_id, CIRCUIT_OPEN, why, "bulkops.circuit.open", denials=n)

    async def _endpoint_down(self, reply: Reply) -> None:
        """No request of the run could connect: skip every row not sent, fail those waiting to retry."""
        self.endpoint_down = True
        why = f"the endpoint is unreachable ({self.unreached} requests, none connected: {reply.error_msg})"
        self.stats.unreachable = why[:300]
        drained = self.source.give_up_all(ENDPOINT_UNREACHABLE, self.stats.unreachable)
        log.warning("bulkops.endpoint.unreachable", requests=self.unreached, skipped_queued=len(drained))
        for job in drained:
            await self.records.skip(job, ENDPOINT_UNREACHABLE, self.stats.unreachable)

    async def give_up(self, project_id: str, code: str, why: str, event: str, **fields: object) -> None:
        """Give a project up: its queued rows, and every later row of it, are skipped with `code`."""
        self.given_up.add(project_id)
        drained = self.source.give_up(project_id, code, why)
        log.warning(event, project_id=project_id, skipped_queued=len(drained), **fields)
        for job in drained:
            await self.records.skip(job, code, why)
