"""The engine's policy: what follows an answer, decided without I/O, a clock or shared state."""

from __future__ import annotations

import random

from bulkops.cloud.outcomes import Action, classify_show, classify_stop
from bulkops.engine.jobs import Job
from bulkops.engine.policy import MAX_POLL, Budgets, Decision, circuit_opens, decide
from bulkops.engine.retry import Backoff
from bulkops.models import RETRY_BUDGET, THROTTLED, WAIT_TIMEOUT, Outcome, Reply, Target
from bulkops.options import Options, RetryPolicy

P = "a" * 32
OK = Reply(200, status="STOPPING", request_id="r")
E503 = Reply(503, error_code="ModelArts.0001", error_msg="busy")
E429 = Reply(429, error_code="APIG.0308", error_msg="throttled")
E403 = Reply(403, error_code="ModelArts.0203", error_msg="forbidden")
SHOW_STOPPED = Reply(200, status="STOPPED")
SHOW_RUNNING = Reply(200, status="RUNNING")


def job(**fields: object) -> Job:
    """A job of one row, with its counters as given."""
    j = Job(Target(1, P, "00000000-0000-4000-8000-000000000001"), P)
    for name, value in fields.items():
        setattr(j, name, value)
    return j


def run_decide(
    j: Job, reply: Reply, now: float = 10.0, options: Options | None = None, **kwargs: object
) -> Decision:
    """decide() for a stop (or a show, when the job polls) answered with `reply`."""
    options = options or Options(endpoint="http://x")
    verdict = classify_show(reply) if j.polling else classify_stop(reply)
    budgets = kwargs.pop("budgets", None) or Budgets(options)
    assert isinstance(budgets, Budgets)
    since = kwargs.pop("throttled_since", None)
    assert since is None or isinstance(since, float)
    backoff = Backoff(options.retry, random.Random(1))
    return decide(j, verdict, reply, now, options, backoff, budgets, since)


def test_a_success_is_final_and_allocates_no_decision() -> None:
    """A success ends the row; the decision is a shared constant (nothing allocated per request)."""
    first = run_decide(job(stop_attempts=1), OK)
    assert first.kind is Action.DONE and first.outcome is Outcome.ACCEPTED and not first.refund
    assert run_decide(job(stop_attempts=1), OK) is first


def test_a_retried_success_refunds_the_budget() -> None:
    """A success after failures gives its retry back to the project's budget."""
    d = run_decide(job(stop_attempts=2, failures=1), OK)
    assert d.kind is Action.DONE and d.refund


def test_a_transient_failure_retries_after_the_backoff() -> None:
    """A 503 is retried later (at now + backoff), taking one retry from the budget."""
    d = run_decide(job(stop_attempts=1), E503, now=10.0)
    assert d.kind is Action.RETRY and d.spend and d.failures == 1
    assert 10.0 <= d.at <= 10.0 + RetryPolicy().base_delay


def test_max_attempts_ends_the_row_failed() -> None:
    """After --max-attempts stops, a failure is final, with the last reply."""
    d = run_decide(job(stop_attempts=5), E503)
    assert d.kind is Action.DONE and d.outcome is Outcome.FAILED and d.overrides is None


def test_a_spent_budget_ends_the_row_with_retry_budget() -> None:
    """With the project's retry budget spent, a failure is final (`bulkops.retry_budget`)."""
    options = Options(endpoint="http://x", retry=RetryPolicy(budget_floor=0, budget_ratio=0.0))
    d = run_decide(job(stop_attempts=1), E503, options=options)
    assert d.kind is Action.DONE and d.outcome is Outcome.FAILED and d.spend
    assert d.overrides is not None and d.overrides["error_code"] == RETRY_BUDGET
    assert "last: ModelArts.0001: busy" in d.overrides["error_msg"]


def test_a_429_goes_back_to_the_front_until_the_throttle_timeout() -> None:
    """A 429 is pacing: back to the front; --throttle-timeout of 429s without a break gives the project up."""
    options = Options(endpoint="http://x", throttle_timeout=60.0)
    assert run_decide(job(), E429, now=50.0, options=options, throttled_since=0.0).kind is Action.THROTTLED
    d = run_decide(job(), E429, now=60.0, options=options, throttled_since=0.0)
    assert d.kind is Action.DONE and d.outcome is Outcome.FAILED
    assert d.circuit is not None and d.circuit[0] == THROTTLED
    assert d.overrides is not None and d.overrides["error_code"] == THROTTLED


def test_a_denial_is_final_and_counts_toward_the_circuit() -> None:
    """A 403 to a stop ends the row failed and counts a denial; the circuit opens at the threshold."""
    d = run_decide(job(stop_attempts=1), E403)
    assert d.kind is Action.DONE and d.outcome is Outcome.FAILED and d.deny
    options = Options(endpoint="http://x", circuit_threshold=3)
    assert not circuit_opens(2, options) and circuit_opens(3, options)


def test_wait_turns_an_accepted_stop_into_polling() -> None:
    """With --wait, an accepted stop polls after --poll-interval instead of ending."""
    options = Options(endpoint="http://x", wait=True, poll_interval=3.0)
    d = run_decide(job(stop_attempts=1), OK, now=10.0, options=options)
    assert d.kind is Action.PENDING and d.start_polling and d.at == 13.0 and d.failures == 0


def test_wait_polls_an_instance_found_stopping_too() -> None:
    """With --wait, an instance answered 6308 (already STOPPING) is polled until STOPPED, as an accepted
    stop is; one answered 6307 (already STOPPED) is done."""
    options = Options(endpoint="http://x", wait=True, poll_interval=3.0)
    stopping = Reply(400, error_code="ModelArts.6308", error_msg="The instance is stopping.")
    d = run_decide(job(stop_attempts=1), stopping, now=10.0, options=options)
    assert d.kind is Action.PENDING and d.start_polling
    stopped = Reply(400, error_code="ModelArts.6307", error_msg="The instance has already been stopped.")
    d = run_decide(job(stop_attempts=1), stopped, now=10.0, options=options)
    assert d.kind is Action.DONE and d.outcome is Outcome.ALREADY_STOPPED


def test_a_poll_that_finds_stop_failed_says_so() -> None:
    """A poll that finds STOP_FAILED ends the row failed with a message naming the status (not blank)."""
    d = run_decide(job(polling=True), Reply(200, status="STOP_FAILED"))
    assert d.kind is Action.DONE and d.outcome is Outcome.FAILED
    assert d.overrides is not None and "STOP_FAILED" in d.overrides["error_msg"]


def test_polls_back_off_and_end_at_the_wait_timeout() -> None:
    """A pending poll waits longer each time (capped); at --wait-timeout the row fails as still running."""
    options = Options(endpoint="http://x", wait=True, poll_interval=3.0, wait_timeout=100.0)
    d = run_decide(job(polling=True, poll_started=0.0, polls=20), SHOW_RUNNING, now=10.0, options=options)
    assert d.kind is Action.PENDING and d.polls == 21 and d.at == 10.0 + MAX_POLL
    d = run_decide(job(polling=True, poll_started=0.0), SHOW_RUNNING, now=100.0, options=options)
    assert d.kind is Action.DONE and d.outcome is Outcome.FAILED
    assert d.overrides is not None and d.overrides["error_code"] == WAIT_TIMEOUT


def test_a_failed_poll_leaves_the_stop_accepted() -> None:
    """A refused poll ends the row accepted, with a note; a stopped instance ends it stopped."""
    d = run_decide(job(polling=True), E403)
    assert d.kind is Action.DONE and d.outcome is Outcome.ACCEPTED and not d.deny
    assert d.overrides is not None and d.overrides["error_msg"].startswith("stop accepted; polling failed")
    assert run_decide(job(polling=True), SHOW_STOPPED).outcome is Outcome.STOPPED


def test_decide_changes_neither_the_job_nor_the_budget() -> None:
    """decide() is pure: the job's counters and the budget's balance are as before."""
    options = Options(endpoint="http://x")
    budgets = Budgets(options)
    j = job(stop_attempts=1)
    balance = budgets.get(P).balance
    run_decide(j, E503, options=options, budgets=budgets)
    assert (j.failures, j.polls, j.polling) == (0, 0, False)
    assert budgets.get(P).balance == balance
