"""The one place that turns an API reply into a decision: final outcome, retry, back off, or give up.

Rules are checked top to bottom; the error code wins over the HTTP status (API-NOTES: "classify by
`error_code` first, HTTP status second"), except that a 2xx to a stop is final: the server took the stop,
and sending it again because of what the body says would be a second stop after a success.

classify_act(op, reply) (PUT .../stop, .../start, .../reboot: `bulkops.operations`; classify_stop is
the stop's):

    2xx                                    DONE       accepted          (whatever the body says: the
                                                                          server took it; never re-sent)
    error_code in op.already               DONE       op.already_outcome  (stop: 6307/6308 ->
                                                                          already_stopped; start: 6305/6306
                                                                          -> already_running; reboot: none.
                                                                          Also on a retry after a lost
                                                                          answer: the first try worked)
    error_code ModelArts.6309              DONE       not_found
    error_code APIG.0308 / APIGW.0308      THROTTLED  -
    404                                    DONE       not_found
    429                                    THROTTLED  -
    401, 403                               DENIED     failed            (feeds the project's circuit)
    408, 500, 502, 503, 504                RETRY      -
    no HTTP status, bulkops.tls_error      DENIED     failed            (a certificate that does not
                                                                          verify will not on retry)
    no HTTP status, bulkops.bad_response   DONE       failed            (sent whole, answer unreadable:
                                                                          the server may have acted)
    no HTTP status (timeout, reset, ...)   RETRY      -
    anything else (other 4xx, 501, ...)    DONE       failed

classify_show (GET .../dev-servers/{id}, polling after an accepted operation with --wait): the same for
errors ("already" codes are not expected there and fall through to the status), and for a 2xx by the
instance status:

    op.goal (STOPPED; RUNNING)             DONE       op.reached        (stopped; running. A reboot's
                                                                          RUNNING only once REBOOTING was
                                                                          seen: `passed`)
    DELETED                                DONE       not_found
    ERROR or any *_FAILED                  DONE       failed
    anything else, or no status            PENDING    -                 (poll again; --wait-timeout ends it)

Actions: DONE and DENIED carry the final `Outcome`; RETRY, THROTTLED and PENDING carry none. THROTTLED is a
retry that also tells the project's limiter to slow down; PENDING is "not there yet", which the engine polls
again without spending the retry budget.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bulkops.models import BAD_RESPONSE, TLS_ERROR, Outcome, Reply
from bulkops.operations import STOP, Operation

ALREADY_STOPPED_CODES = STOP.already
NOT_FOUND_CODES = frozenset({"ModelArts.6309"})
THROTTLED_CODES = frozenset({"APIG.0308", "APIGW.0308"})
RETRY_STATUSES = frozenset({408, 500, 502, 503, 504})
#: Failures that a retry cannot turn into a success: the instance's status does not allow a stop (it is in
#: ERROR, say). `bulkops report failed` leaves them out unless asked for them by `--code`.
NON_RETRYABLE_CODES = frozenset({"ModelArts.6310"})
NON_RETRYABLE_STATUSES = frozenset({"ERROR"})
DENIED_STATUSES = frozenset({401, 403})


class Action(enum.Enum):
    """What the engine does with a reply."""

    DONE = "done"
    """Final: write the outcome."""
    RETRY = "retry"
    """Transient (5xx, timeout, connection error): retry after a backoff, within the budget."""
    THROTTLED = "throttled"
    """429: slow the project's limiter down, then retry."""
    DENIED = "denied"
    """401/403: final `failed`, and one more strike toward the project's circuit breaker."""
    PENDING = "pending"
    """Polling only: the instance is not stopped yet; poll again later."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """An action and, for DONE and DENIED, the final outcome."""

    action: Action
    outcome: Outcome | None = None


_THROTTLED = Verdict(Action.THROTTLED)
_RETRY = Verdict(Action.RETRY)
_PENDING = Verdict(Action.PENDING)
_DENIED = Verdict(Action.DENIED, Outcome.FAILED)
_FAILED = Verdict(Action.DONE, Outcome.FAILED)
_NOT_FOUND = Verdict(Action.DONE, Outcome.NOT_FOUND)
_ACCEPTED = Verdict(Action.DONE, Outcome.ACCEPTED)
_DONE = {outcome: Verdict(Action.DONE, outcome) for outcome in Outcome}


def _classify_error(reply: Reply) -> Verdict | None:
    """The verdict shared by both calls for a reply that is not a 2xx answer, or None for a 2xx."""
    code = reply.error_code
    if code in NOT_FOUND_CODES:
        return _NOT_FOUND
    if code in THROTTLED_CODES:
        return _THROTTLED
    status = reply.http_status
    if status is None:
        # No answer: transient, except a TLS failure, which repeats like an auth refusal, and an answer
        # that came but could not be parsed (it may have been a success: never re-sent).
        if code == TLS_ERROR:
            return _DENIED
        return _FAILED if code == BAD_RESPONSE else _RETRY
    if 200 <= status < 300:
        return None
    if status == 404:
        return _NOT_FOUND
    if status == 429:
        return _THROTTLED
    if status in DENIED_STATUSES:
        return _DENIED
    if status in RETRY_STATUSES:
        return _RETRY
    return _FAILED


def classify_act(op: Operation, reply: Reply) -> Verdict:
    """The verdict on one attempt of operation `op` (see the module docstring's table)."""
    status = reply.http_status
    if status is not None and 200 <= status < 300:
        return _ACCEPTED
    if reply.error_code in op.already and op.already_outcome is not None:
        return _DONE[op.already_outcome]
    verdict = _classify_error(reply)
    return _ACCEPTED if verdict is None else verdict


def classify_read(reply: Reply) -> Verdict | None:
    """The verdict on a read that is not a 2xx answer (a page of a listing), or None for a 2xx: the
    errors' rows of the table above (a 404 or 6309 is `not_found`, which a listing takes as a failure)."""
    return _classify_error(reply)


def classify_stop(reply: Reply) -> Verdict:
    """The verdict on one stop attempt: `classify_act(STOP, reply)`."""
    return classify_act(STOP, reply)


def classify_show(reply: Reply, op: Operation = STOP, passed: bool = True) -> Verdict:
    """The verdict on one poll of an instance after `op` was accepted (see the module docstring).

    `passed`: the instance was seen in `op.transit` since (what a reboot's goal needs, `op.via_transit`).
    """
    verdict = _classify_error(reply)
    if verdict is not None:
        return verdict
    status = (reply.status or "").upper()
    if status == op.goal and (passed or not op.via_transit):
        return _DONE[op.reached]
    if status == "DELETED":
        return _NOT_FOUND
    if status == "ERROR" or status.endswith("_FAILED"):
        return _FAILED
    return _PENDING
