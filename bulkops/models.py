"""The values that flow through bulkops: what to stop, what the API said, and the final record.

Everything here is a small value with no behaviour beyond derived properties, so that every layer
(targets, api, outcomes, engine, report, simulator) can share it without importing anything above it.

Target, Reply and Result are made once per row or per attempt, on the hot path, and never changed after:
they are slotted dataclasses, immutable by convention, hashed and compared by value like frozen ones, but
not `frozen=True`. A frozen dataclass sets each field through `object.__setattr__`: a Result cost 2.2 us
to make, against 0.2 us now (a run makes one per row, a Reply per attempt, and a Target once or twice per
row). Code that needs a changed copy uses `dataclasses.replace`, as it would with a frozen one.

    Target  one valid row to send: (line, project_id, id)
    Reply   what one HTTP attempt produced: a parsed answer, or a transport failure
    Result  the final record of one input row, exactly as the report writes it
    Outcome the closed set of final outcomes the contract names (every operation's: bulkops.operations)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    """The final outcome of one input row (see docs/contract.md)."""

    ACCEPTED = "accepted"
    ALREADY_STOPPED = "already_stopped"
    STOPPED = "stopped"
    NOT_FOUND = "not_found"
    FAILED = "failed"
    INVALID = "invalid"
    SKIPPED = "skipped"
    ALREADY_RUNNING = "already_running"
    RUNNING = "running"

    @property
    def succeeded(self) -> bool:
        """True for the outcomes that mean the operation's goal is reached or on its way (the instance is
        stopped or stopping after a stop, running or starting after a start)."""
        return self in _SUCCESS


_SUCCESS = frozenset(
    {Outcome.ACCEPTED, Outcome.ALREADY_STOPPED, Outcome.STOPPED, Outcome.ALREADY_RUNNING, Outcome.RUNNING}
)
#: The successes that keep the API's error code in the report (it says why nothing was sent: 6307, ...).
ALREADY = frozenset({Outcome.ALREADY_STOPPED, Outcome.ALREADY_RUNNING})


@dataclass(slots=True, unsafe_hash=True)
class Target:
    """One valid, de-duplicated input row: the instance `id` in project `project_id`, from line `line`."""

    line: int
    project_id: str
    id: str


@dataclass(slots=True, unsafe_hash=True)
class Reply:
    """What one HTTP attempt produced.

    `http_status` is None when no answer arrived (timeout, reset, refused); `error_code` then names the
    transport failure (`bulkops.timeout`, `bulkops.connection_error`). `retry_after` is the server's
    `Retry-After` in seconds when it sent one.
    """

    http_status: int | None
    status: str | None = None
    error_code: str | None = None
    error_msg: str | None = None
    request_id: str | None = None
    retry_after: float | None = None


@dataclass(slots=True, unsafe_hash=True)
class Result:
    """The final record of one input row; field for field the report's JSON object.

    Do not change one in place (it is hashed by value): make a changed copy with `dataclasses.replace`.
    """

    line: int
    project_id: str | None
    id: str | None
    outcome: Outcome
    status: str | None = None
    http_status: int | None = None
    error_code: str | None = None
    error_msg: str | None = None
    request_id: str | None = None
    attempts: int = 0
    elapsed_ms: int = 0
    finished_at: str = ""

    @property
    def succeeded(self) -> bool:
        """True when the row needs no further request (of the run's operation)."""
        return self.outcome.succeeded


#: Tool-made error codes, used in `error_code` for rows the tool decided about itself.
INVALID_ID = "bulkops.invalid_id"
INVALID_PROJECT_ID = "bulkops.invalid_project_id"
MISSING_PROJECT_ID = "bulkops.missing_project_id"
INVALID_ROW = "bulkops.invalid_row"
DUPLICATE = "bulkops.duplicate"
CIRCUIT_OPEN = "bulkops.circuit_open"
ENDPOINT_UNREACHABLE = "bulkops.endpoint_unreachable"
RETRY_BUDGET = "bulkops.retry_budget_exhausted"
THROTTLED = "bulkops.throttled"
TIMEOUT = "bulkops.timeout"
CONNECTION_ERROR = "bulkops.connection_error"
TLS_ERROR = "bulkops.tls_error"
BAD_RESPONSE = "bulkops.bad_response"
INTERNAL_ERROR = "bulkops.internal_error"
WAIT_TIMEOUT = "bulkops.wait_timeout"
