"""The operations bulkops performs, as data: one frozen row per operation, and nothing that branches on it.

The engine, the report, `--resume`, the progress line and the benchmarks take an `Operation` as a
parameter (`Options.operation`, `DevServerClient.act(op, ...)`, `outcomes.classify_act(op, reply)`);
what differs between a stop and a start is in this table and nowhere else.

    op      request                                     "already" codes -> outcome       --wait polls for
    stop    PUT /v1/{project_id}/dev-servers/{id}/stop    ModelArts.6307 (stopped),       STOPPED
                                                        ModelArts.6308 (stopping)
                                                        -> already_stopped
    start   PUT /v1/{project_id}/dev-servers/{id}/start   ModelArts.6305 (running),       RUNNING
                                                        ModelArts.6306 (starting)
                                                        -> already_running
    reboot  PUT /v1/{project_id}/dev-servers/{id}/reboot  none (a reboot is an act, not   RUNNING, once seen
                                                        a state to be already in)       REBOOTING

Every operation: a 2xx answer is `accepted` (the API took it; whatever the body says); with `--wait` the
instance is polled (`GET .../dev-servers/{id}`) until `goal`, and the row ends `reached` (`stopped`,
`running`). An "already" code that says the instance is on its way (`on_its_way`: STOPPING, STARTING) is
polled too with `--wait`. A reboot's goal (RUNNING) is the status it started from, so it counts only
after the instance was seen `transit` (REBOOTING): in the reboot's own answer or in a poll.

Where the codes come from (docs/contract.md, "Operations"): 6305-6308 are in Huawei Cloud's ModelArts
error-code table (API reference, "Error Codes", modelarts_03_0095: "The instance is already running.",
"The instance is starting.", "The instance has already been stopped.", "The instance is stopping.");
the official SDK (huaweicloudsdkmodelarts 3.1.x) has the paths and methods (`StartDevServer`,
`StopDevServer`, `RebootDevServer`: PUT .../start, .../stop, .../reboot) but no error codes.

Imports only `models`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bulkops.models import Outcome


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation on one DevServer instance; see the module docstring's table."""

    name: str
    """The command (`bulkops stop`) and the last part of the path."""
    path: str
    """The request's path template, `{project_id}` and `{id}` filled in after validation."""
    already: frozenset[str]
    """Error codes that mean the instance is already in (or on its way to) the operation's goal."""
    on_its_way: frozenset[str]
    """The `already` codes that mean "on its way" (STOPPING, STARTING): polled like an accepted one."""
    already_outcome: Outcome | None
    """The outcome of an `already` answer (None: the operation has no such codes)."""
    goal: str
    """The status `--wait` polls for."""
    transit: str
    """The status on the way to the goal (STOPPING, STARTING, REBOOTING)."""
    reached: Outcome
    """The outcome once `--wait` saw the goal."""
    via_transit: bool = False
    """True when the goal counts only after `transit` was seen (a reboot: RUNNING before and after)."""
    method: str = "PUT"

    @property
    def verb(self) -> str:
        """The operation's name as the first word of a sentence: "Stop", "Start", "Reboot"."""
        return self.name.capitalize()


STOP = Operation(
    name="stop",
    path="/v1/{project_id}/dev-servers/{id}/stop",
    already=frozenset({"ModelArts.6307", "ModelArts.6308"}),
    on_its_way=frozenset({"ModelArts.6308"}),
    already_outcome=Outcome.ALREADY_STOPPED,
    goal="STOPPED",
    transit="STOPPING",
    reached=Outcome.STOPPED,
)
START = Operation(
    name="start",
    path="/v1/{project_id}/dev-servers/{id}/start",
    already=frozenset({"ModelArts.6305", "ModelArts.6306"}),
    on_its_way=frozenset({"ModelArts.6306"}),
    already_outcome=Outcome.ALREADY_RUNNING,
    goal="RUNNING",
    transit="STARTING",
    reached=Outcome.RUNNING,
)
REBOOT = Operation(
    name="reboot",
    path="/v1/{project_id}/dev-servers/{id}/reboot",
    already=frozenset(),
    on_its_way=frozenset(),
    already_outcome=None,
    goal="RUNNING",
    transit="REBOOTING",
    reached=Outcome.RUNNING,
    via_transit=True,
)

#: Every operation, by name (the command line's table).
OPERATIONS: dict[str, Operation] = {op.name: op for op in (STOP, START, REBOOT)}

#: Every "on its way" code of every operation: an `already_*` record with one of these, sent more than
#: once, may be the run's own request whose answer was lost (see `acted_on`).
_ON_ITS_WAY = frozenset().union(*(op.on_its_way for op in OPERATIONS.values()))
_ACTED = frozenset({Outcome.ACCEPTED.value, *(op.reached.value for op in OPERATIONS.values())})


def acted_on(outcome: str, error_code: object, attempts: object) -> bool:
    """True when a report record says the run itself changed the instance (what `--from-report` takes).

    `accepted`, `stopped` and `running` say so. So does an `already_*` answered "on its way"
    (ModelArts.6308 STOPPING, 6306 STARTING) after more than one attempt: the usual story is that the
    first request was applied and its answer lost (a 503, a timeout), so the retry found the instance on
    its way. An instance that was already on its way before the run and needed a retry looks the same in
    the report; it is taken too. `already_*` on the first attempt, and every other outcome, is not.
    """
    if outcome in _ACTED:
        return True
    return error_code in _ON_ITS_WAY and isinstance(attempts, int) and attempts > 1
