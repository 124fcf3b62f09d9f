"""What happens to a row after an answer: pure, with no I/O, no clock, no logging and no shared state.

    decide(job, verdict, reply, now, options, backoff, budgets, throttled_since) -> Decision

    DONE       the row's final record: `outcome`, and `overrides` where the record says more than the
               last reply (a retry budget spent, a --wait-timeout, a poll that failed)
    RETRY      send again at `at` (after the backoff), within --max-attempts and the project's budget
    PENDING    poll the instance at `at` (--wait); an operation once accepted stays accepted
    THROTTLED  a 429 is pacing, never failure: back to the front of the project's queue, spending
               neither --max-attempts nor the budget; only `--throttle-timeout` of 429s without a break
               gives the project up (a FINAL with `circuit` set)

The kind of a decision is an `outcomes.Action`, the verdict's own vocabulary. The decision carries what
to change (the job's new counters, a budget to spend or refund, a denial to
count, a project to give up); the worker applies it. Decisions without data are module constants, so
the common answer (a success) allocates nothing. The only impurity is the backoff's injected random
source (jitter), which tests seed.

Imports only values: `models`, `options`, `outcomes`, `retry`, `engine.jobs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bulkops.engine.jobs import Job
from bulkops.models import RETRY_BUDGET, THROTTLED, WAIT_TIMEOUT, Outcome, Reply
from bulkops.options import Options
from bulkops.cloud.outcomes import Action, Verdict
from bulkops.engine.retry import Backoff, RetryBudget

MAX_POLL = 30.0  # the longest wait between two polls of one instance


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision about one row; see the module docstring."""

    kind: Action
    """DONE (final), RETRY, PENDING (poll) or THROTTLED; never DENIED (a denial is DONE with `deny`)."""
    outcome: Outcome | None = None
    at: float = 0.0
    """RETRY, POLL: when the row may go again."""
    overrides: Mapping[str, Any] | None = None
    """FINAL: fields of the record that say more than the last reply."""
    failures: int = 0
    """RETRY, POLL: the job's failures after this answer."""
    polls: int = 0
    """POLL: the job's polls after this one is scheduled."""
    start_polling: bool = False
    """POLL: the operation was accepted and --wait is on: the job polls from now."""
    spend: bool = False
    """Take a retry from the project's budget (granted for RETRY; refused for a RETRY_BUDGET final)."""
    refund: bool = False
    """A retried row succeeded: give its retry back to the project's budget."""
    deny: bool = False
    """An authentication refusal: one more toward the project's circuit."""
    circuit: tuple[str, str] | None = None
    """(error_code, why): give the project up after this record."""


class Budgets:
    """The retry budget of each project (`retry.RetryBudget`), made when first needed."""

    __slots__ = ("_budgets", "_floor", "_ratio")

    def __init__(self, options: Options) -> None:
        self._ratio = options.retry.budget_ratio
        self._floor = options.retry.budget_floor
        self._budgets: dict[str, RetryBudget] = {}

    def get(self, project_id: str) -> RetryBudget:
        budget = self._budgets.get(project_id)
        if budget is None:
            budget = self._budgets[project_id] = RetryBudget(self._ratio, self._floor)
        return budget


_FINAL = {outcome: Decision(Action.DONE, outcome) for outcome in Outcome}
_FINAL_REFUND = {outcome: Decision(Action.DONE, outcome, refund=True) for outcome in Outcome}
_DENIED = {outcome: Decision(Action.DONE, outcome, deny=True) for outcome in Outcome}
_BACK_TO_FRONT = Decision(Action.THROTTLED)


def final(outcome: Outcome) -> Decision:
    """The decision that ends a row with `outcome` and nothing more."""
    return _FINAL[outcome]


def decide(
    job: Job,
    verdict: Verdict,
    reply: Reply,
    now: float,
    options: Options,
    backoff: Backoff,
    budgets: Budgets,
    throttled_since: float | None = None,
) -> Decision:
    """What to do with `job` after `reply` (classified as `verdict`) came at `now`.

    `job` is as after the attempt (its `attempts`, `stop_attempts` and `last` counted); `throttled_since`
    is when the project's run of 429s without a break began (for a THROTTLED verdict).
    """
    action = verdict.action
    op = options.operation
    if action is Action.DONE:
        outcome = verdict.outcome or Outcome.FAILED
        if job.polling:
            if outcome is Outcome.FAILED and not 200 <= (reply.http_status or 0) < 300:
                return poll_failed(reply, op.name)  # a 4xx to the poll: the operation still stands
            if outcome is Outcome.FAILED:  # the instance itself failed (STOP_FAILED, ERROR): say so
                note = {"error_msg": f"the instance is {reply.status or 'in an unknown state'} (polled)"}
                return Decision(Action.DONE, Outcome.FAILED, overrides=note)
        elif options.wait and (
            outcome is Outcome.ACCEPTED or (outcome.succeeded and reply.error_code in op.on_its_way)
        ):  # --wait: poll until the goal (an instance found on its way, STOPPING 6308, STARTING 6306, too)
            refund = bool(job.failures)
            at = now + options.poll_interval
            return Decision(Action.PENDING, at=at, polls=job.polls, start_polling=True, refund=refund)
        if job.failures and outcome.succeeded:
            return _FINAL_REFUND[outcome]  # a retry that worked costs the budget nothing
        return _FINAL[outcome]
    if action is Action.THROTTLED:
        since = now if throttled_since is None else throttled_since
        if now - since < options.throttle_timeout:
            return _BACK_TO_FRONT
        why = (
            f"project {job.project_id} was throttled (429) without a break for {now - since:.0f}s "
            f"(--throttle-timeout {options.throttle_timeout:g}s)"
        )
        if job.polling:
            return Decision(Action.DONE, Outcome.ACCEPTED, circuit=(THROTTLED, why))
        overrides = {"error_code": THROTTLED, "error_msg": why}
        return Decision(Action.DONE, Outcome.FAILED, overrides=overrides, circuit=(THROTTLED, why))
    if action is Action.RETRY:
        failures = job.failures + 1
        if job.polling:  # a failed poll: the operation was taken; keep polling until --wait-timeout
            return poll_later(job, reply, now, options, failures)
        if job.stop_attempts >= options.retry.max_attempts:
            return _FINAL[Outcome.FAILED]
        if budgets.get(job.project_id).balance < 1.0:
            said = f"{reply.error_code or reply.http_status}: {reply.error_msg or ''}"
            why = f"retry budget spent (too many failures in project {job.project_id}); last: {said}"
            overrides = {"error_code": RETRY_BUDGET, "error_msg": why[:300]}
            return Decision(Action.DONE, Outcome.FAILED, overrides=overrides, spend=True)
        delay = backoff.delay(failures, reply.retry_after)
        return Decision(Action.RETRY, at=now + delay, failures=failures, spend=True)
    if action is Action.DENIED:
        if job.polling:  # the operation was taken; a refused poll neither undoes it nor feeds the circuit
            return poll_failed(reply, op.name)
        return _DENIED[verdict.outcome or Outcome.FAILED]
    return poll_later(job, reply, now, options, job.failures)  # PENDING: not stopped yet


def poll_later(job: Job, last: Reply | None, now: float, options: Options, failures: int) -> Decision:
    """Poll again after a growing interval, or give up polling at --wait-timeout."""
    if now - job.poll_started >= options.wait_timeout:
        if last is not None and not 200 <= (last.http_status or 0) < 300:
            return poll_failed(last, options.operation.name)  # the last poll failed: not stuck, unknown
        why = f"still {last.status if last else 'unknown'} after --wait-timeout {options.wait_timeout:g}s"
        return Decision(Action.DONE, Outcome.FAILED, overrides={"error_code": WAIT_TIMEOUT, "error_msg": why})
    polls = job.polls + 1
    delay = min(MAX_POLL, options.poll_interval * 1.5**polls)
    return Decision(Action.PENDING, at=now + delay, failures=failures, polls=polls)


def poll_failed(reply: Reply, name: str = "stop") -> Decision:
    """Polling cannot finish (refused, an error, errors until --wait-timeout): the operation `name` stays
    accepted."""
    what = f"HTTP {reply.http_status}" if reply.http_status is not None else "no answer"
    note = poll_note(f"{what}: {reply.error_msg or ''}", name)
    return Decision(
        Action.DONE, Outcome.ACCEPTED, overrides={"error_code": reply.error_code, "error_msg": note}
    )


def poll_note(what: str, name: str = "stop") -> str:
    """The error message of an operation (`name`) that was accepted but whose polling failed."""
    return f"{name} accepted; polling failed: {what}"[:300]


def circuit_opens(denials: int, options: Options) -> bool:
    """After `denials` refusals in a row, the project's circuit opens."""
    return denials >= options.circuit_threshold
