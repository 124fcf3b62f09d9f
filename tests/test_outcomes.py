"""Reply classification: the table in bulkops/cloud/outcomes.py, row by row."""

from __future__ import annotations

import pytest

from bulkops.cloud.outcomes import Action, Verdict, classify_show, classify_stop
from bulkops.models import BAD_RESPONSE, CONNECTION_ERROR, TIMEOUT, Outcome, Reply

DONE = Action.DONE


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        (Reply(200, status="STOPPING"), Verdict(DONE, Outcome.ACCEPTED)),
        (Reply(200, error_code=BAD_RESPONSE), Verdict(DONE, Outcome.ACCEPTED)),
        (Reply(202), Verdict(DONE, Outcome.ACCEPTED)),
        (Reply(400, error_code="ModelArts.6307"), Verdict(DONE, Outcome.ALREADY_STOPPED)),
        (Reply(400, error_code="ModelArts.6308"), Verdict(DONE, Outcome.ALREADY_STOPPED)),
        (Reply(500, error_code="ModelArts.6308"), Verdict(DONE, Outcome.ALREADY_STOPPED)),
        (Reply(400, error_code="ModelArts.6309"), Verdict(DONE, Outcome.NOT_FOUND)),
        (Reply(404, error_code="ModelArts.6309"), Verdict(DONE, Outcome.NOT_FOUND)),
        (Reply(404), Verdict(DONE, Outcome.NOT_FOUND)),
        (Reply(429, error_code="APIG.0308"), Verdict(Action.THROTTLED)),
        (Reply(429), Verdict(Action.THROTTLED)),
        (Reply(400, error_code="APIG.0308"), Verdict(Action.THROTTLED)),
        (Reply(500), Verdict(Action.RETRY)),
        (Reply(502), Verdict(Action.RETRY)),
        (Reply(503, error_code="ModelArts.0001"), Verdict(Action.RETRY)),
        (Reply(504), Verdict(Action.RETRY)),
        (Reply(408), Verdict(Action.RETRY)),
        (Reply(None, error_code=TIMEOUT), Verdict(Action.RETRY)),
        (Reply(None, error_code=CONNECTION_ERROR), Verdict(Action.RETRY)),
        (Reply(None), Verdict(Action.RETRY)),
        (Reply(401, error_code="APIGW.0301"), Verdict(Action.DENIED, Outcome.FAILED)),
        (Reply(403, error_code="ModelArts.0203"), Verdict(Action.DENIED, Outcome.FAILED)),
        (Reply(400, error_code="ModelArts.0101"), Verdict(DONE, Outcome.FAILED)),
        (Reply(409), Verdict(DONE, Outcome.FAILED)),
        (Reply(501), Verdict(DONE, Outcome.FAILED)),
    ],
)
def test_classify_stop(reply: Reply, verdict: Verdict) -> None:
    """Each kind of stop reply leads to the contract's outcome or the right retry decision."""
    assert classify_stop(reply) == verdict


def test_stop_that_succeeded_before_its_answer_was_lost_is_a_success() -> None:
    """A retry after a timeout that gets 'instance is stopping' reports already_stopped, a success."""
    assert classify_stop(Reply(None, error_code=TIMEOUT)).action is Action.RETRY
    verdict = classify_stop(Reply(400, error_code="ModelArts.6308"))
    assert verdict.outcome is not None and verdict.outcome.succeeded


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        (Reply(200, status="STOPPED"), Verdict(DONE, Outcome.STOPPED)),
        (Reply(200, status="stopped"), Verdict(DONE, Outcome.STOPPED)),
        (Reply(200, status="STOP_FAILED"), Verdict(DONE, Outcome.FAILED)),
        (Reply(200, status="ERROR"), Verdict(DONE, Outcome.FAILED)),
        (Reply(200, status="START_FAILED"), Verdict(DONE, Outcome.FAILED)),
        (Reply(200, status="DELETED"), Verdict(DONE, Outcome.NOT_FOUND)),
        (Reply(200, status="STOPPING"), Verdict(Action.PENDING)),
        (Reply(200, status="RUNNING"), Verdict(Action.PENDING)),
        (Reply(200, status="DELETING"), Verdict(Action.PENDING)),
        (Reply(200, error_code=BAD_RESPONSE), Verdict(Action.PENDING)),
        (Reply(404, error_code="ModelArts.6309"), Verdict(DONE, Outcome.NOT_FOUND)),
        (Reply(400, error_code="ModelArts.6309"), Verdict(DONE, Outcome.NOT_FOUND)),
        (Reply(429, error_code="APIG.0308"), Verdict(Action.THROTTLED)),
        (Reply(503), Verdict(Action.RETRY)),
        (Reply(None, error_code=TIMEOUT), Verdict(Action.RETRY)),
        (Reply(401), Verdict(Action.DENIED, Outcome.FAILED)),
        (Reply(403), Verdict(Action.DENIED, Outcome.FAILED)),
        (Reply(400, error_code="ModelArts.0101"), Verdict(DONE, Outcome.FAILED)),
    ],
)
def test_classify_show(reply: Reply, verdict: Verdict) -> None:
    """With --wait, polling ends at STOPPED (stopped), a failure state (failed) or a vanished instance."""
    assert classify_show(reply) == verdict


def test_only_final_verdicts_carry_an_outcome() -> None:
    """DONE and DENIED always name the outcome to report; the others never do."""
    replies = [Reply(s) for s in (200, 400, 401, 404, 429, 500, None)]
    for verdict in [classify_stop(r) for r in replies] + [classify_show(r) for r in replies]:
        assert (verdict.outcome is not None) == (verdict.action in {Action.DONE, Action.DENIED})


def test_tls_failure_is_not_retried() -> None:
    """A certificate that does not verify is a final failure that feeds the circuit, not a retry."""
    from bulkops.models import TLS_ERROR

    verdict = classify_stop(Reply(None, error_code=TLS_ERROR, error_msg="TLS failed"))
    assert verdict.action is Action.DENIED
    assert verdict.outcome is Outcome.FAILED
