"""Issue 16, operations as data: start and reboot go through the same engine as stop, told apart only by
their row in `bulkops.operations` (codes, goal, outcomes)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bulkops.cloud.auth import Credentials
from bulkops.cloud.outcomes import Action, Verdict, classify_act, classify_show, classify_stop
from bulkops.engine import stop_instances
from bulkops.engine.jobs import sender
from bulkops.io.fromreport import acted_rows
from bulkops.models import Outcome, Reply, Result, Target
from bulkops.operations import OPERATIONS, REBOOT, START, STOP, acted_on
from bulkops.options import Options, RateLimit
from bulkops.simulator import AccessKey, InventorySpec, SimulatorConfig, run_simulator

AK, SK = "AKOPERATIONS00000001", "sk-operations-secret"


def err(code: str, status: int = 400) -> Reply:
    return Reply(status, error_code=code, error_msg="x")


@pytest.mark.parametrize(
    ("op", "reply", "outcome"),
    [
        (START, err("ModelArts.6305"), Outcome.ALREADY_RUNNING),
        (START, err("ModelArts.6306"), Outcome.ALREADY_RUNNING),
        (START, err("ModelArts.6307"), Outcome.FAILED),  # a start is not done by a stopped instance
        (START, Reply(200, status="STARTING"), Outcome.ACCEPTED),
        (REBOOT, err("ModelArts.6305"), Outcome.FAILED),  # a reboot has no "already"
        (REBOOT, err("ModelArts.6307"), Outcome.FAILED),
        (REBOOT, Reply(200, status="REBOOTING"), Outcome.ACCEPTED),
        (STOP, err("ModelArts.6305"), Outcome.FAILED),
        (STOP, err("ModelArts.6308"), Outcome.ALREADY_STOPPED),
    ],
)
def test_each_operation_is_classified_by_its_own_codes(op: object, reply: Reply, outcome: Outcome) -> None:
    """An "already" code counts only for the operation whose row names it; the rest are failures."""
    assert classify_act(op, reply) == Verdict(Action.DONE, outcome)  # type: ignore[arg-type]


def test_classify_stop_is_the_stop_row() -> None:
    """The stop's classifier is the generic one with the stop's row, answer for answer."""
    for reply in (err("ModelArts.6307"), err("ModelArts.6309"), Reply(503), Reply(200), Reply(429)):
        assert classify_stop(reply) == classify_act(STOP, reply)


def test_a_reboot_is_running_only_after_it_was_seen_rebooting() -> None:
    """Polling a reboot: RUNNING before REBOOTING was seen is not the end; after it, the row is `running`."""
    running = Reply(200, status="RUNNING")
    assert classify_show(running, REBOOT, False).action is Action.PENDING
    assert classify_show(running, REBOOT, True) == Verdict(Action.DONE, Outcome.RUNNING)
    assert classify_show(running, START, False) == Verdict(Action.DONE, Outcome.RUNNING)
    assert classify_show(Reply(200, status="START_FAILED"), START).outcome is Outcome.FAILED


@pytest.mark.parametrize(
    ("outcome", "code", "attempts", "taken"),
    [
        ("accepted", None, 1, True),
        ("stopped", None, 3, True),
        ("running", None, 1, True),
        ("already_stopped", "ModelArts.6307", 1, False),
        ("already_stopped", "ModelArts.6307", 3, False),  # at the goal: cannot tell from "before the run"
        ("already_stopped", "ModelArts.6308", 1, False),  # stopping before the run
        ("already_stopped", "ModelArts.6308", 2, True),  # the run's own stop, its answer lost
        ("already_running", "ModelArts.6306", 2, True),
        ("failed", "ModelArts.6310", 1, False),
        ("not_found", "ModelArts.6309", 1, False),
        ("skipped", "bulkops.duplicate", 0, False),
    ],
)
def test_from_report_takes_what_the_run_changed(
    outcome: str, code: str | None, attempts: int, taken: bool
) -> None:
    """`--from-report` takes accepted/stopped/running rows and lost-answer ones, never already_* before."""
    assert acted_on(outcome, code, attempts) is taken


def test_acted_rows_keeps_the_input_line_and_its_order(tmp_path: Path) -> None:
    """Rows come in line order with their first line, once each, a resumed report's repeats included."""
    p = "0123456789abcdef0123456789abcdef"
    ids = [f"00000000-0000-4000-8000-00000000000{k}" for k in range(4)]
    recs = [
        Result(7, p, ids[0], Outcome.ACCEPTED, attempts=1),
        Result(3, p, ids[1], Outcome.FAILED, attempts=5),
        Result(5, p, ids[2], Outcome.ALREADY_STOPPED, error_code="ModelArts.6307", attempts=1),
        Result(3, p, ids[1], Outcome.ACCEPTED, attempts=1),  # resumed: line 3 went through
        Result(9, p, ids[3], Outcome.STOPPED, attempts=2),
    ]
    path = tmp_path / "r.jsonl"
    path.write_text(
        "".join(json.dumps(dataclasses.asdict(r) | {"outcome": r.outcome.value}) + "\n" for r in recs)
    )
    assert acted_rows(str(path)) == [Target(3, p, ids[1]), Target(7, p, ids[0]), Target(9, p, ids[3])]


def test_a_stop_only_client_still_stops_but_cannot_start() -> None:
    """A client with only stop() and show() runs a stop; asked to start, it is refused up front."""

    class StopOnly:
        async def stop(self, project_id: str, instance_id: str) -> Reply:
            return Reply(200)

        async def show(self, project_id: str, instance_id: str) -> Reply:
            return Reply(200)

    client = StopOnly()
    assert sender(client, STOP) == client.stop
    with pytest.raises(TypeError, match="start"):
        sender(client, START)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "initial", "outcome", "final"),
    [
        ("start", "STOPPED", Outcome.RUNNING, "RUNNING"),
        ("start", "RUNNING", Outcome.ALREADY_RUNNING, "RUNNING"),
        ("start", "STARTING", Outcome.RUNNING, "RUNNING"),  # 6306, polled like an accepted start
        ("reboot", "RUNNING", Outcome.RUNNING, "RUNNING"),
        ("reboot", "STOPPED", Outcome.FAILED, "STOPPED"),
        ("stop", "RUNNING", Outcome.STOPPED, "STOPPED"),
    ],
)
async def test_each_operation_with_wait_against_the_simulator(
    name: str, initial: str, outcome: Outcome, final: str
) -> None:
    """Through the engine and the signing simulator, `--wait` ends each operation at its goal (a reboot after
    REBOOTING), and a refused one is failed with the API's code."""
    config = SimulatorConfig(
        inventory=InventorySpec(projects=1, instances_per_project=3, status_mix={initial: 1.0}, seed=5),
        access_keys=(AccessKey(AK, SK),),
        stop_delay=0.3,
    )
    async with run_simulator(config) as sim:
        p = sim.inventory.project_ids[0]
        targets = [Target(k + 1, p, i) for k, (i, _) in enumerate(sim.inventory.iter_instances(p))]
        options = Options(
            endpoint=sim.url, credentials=Credentials(ak=AK, sk=SK), rate=RateLimit(50.0), wait=True,
            poll_interval=0.1, wait_timeout=10.0, operation=OPERATIONS[name],
        )  # fmt: skip
        async with stop_instances(targets, options) as run:
            results = [r async for r in run]
        statuses = {sim.instances.status(p, t.id)[0] for t in targets}  # type: ignore[index]
    assert {r.outcome for r in results} == {outcome}
    assert statuses == {final}
    if outcome is Outcome.FAILED:
        assert {r.error_code for r in results} == {"ModelArts.6307"}
    if name == "reboot" and outcome is Outcome.RUNNING:
        assert {r.status for r in results} == {"RUNNING"}


@pytest.mark.anyio
async def test_simulator_start_and_reboot_state_machine_and_refusals() -> None:
    """The simulator moves STOPPED -> STARTING -> RUNNING and RUNNING -> REBOOTING -> RUNNING after its
    delay, and refuses an operation with the code of the instance's status (6305-6308, else 6310)."""
    from test_simulator import FakeClock, call, find, quiet, serve, show_url

    clock = FakeClock()
    async with serve(quiet(stop_delay=5.0), clock) as (sim, session):

        async def put(op: str, p: str, i: str) -> tuple[int, str | None, str | None]:
            status, _, body = await call(session, "PUT", f"{show_url(sim, p, i)}/{op}")
            return status, body.get("status"), body.get("error_code")

        async def shown(p: str, i: str) -> str:
            return str((await call(session, "GET", show_url(sim, p, i)))[2]["status"])

        p, stopped = find(sim, "STOPPED")
        _, running = find(sim, "RUNNING")
        assert await put("start", p, stopped) == (200, "STARTING", None)
        assert await put("start", p, stopped) == (400, None, "ModelArts.6306")
        assert await put("stop", p, stopped) == (400, None, "ModelArts.6306")
        assert await put("reboot", p, running) == (200, "REBOOTING", None)
        assert await put("reboot", p, running) == (400, None, "ModelArts.6310")
        assert (await shown(p, stopped), await shown(p, running)) == ("STARTING", "REBOOTING")
        clock.advance(5.0)
        assert (await shown(p, stopped), await shown(p, running)) == ("RUNNING", "RUNNING")
        assert await put("start", p, running) == (400, None, "ModelArts.6305")
        _, other = find(sim, "STOPPED", skip=1)
        assert await put("reboot", p, other) == (400, None, "ModelArts.6307")
        assert (await put("start", p, sim.inventory.unknown_id(p, 0)))[2] == "ModelArts.6309"


@pytest.mark.anyio
async def test_simulator_throttles_and_faults_start_like_stop() -> None:
    """A start is throttled (429 APIG.0308) past the project's limit, and a lost answer still starts it."""
    from test_simulator import FakeClock, call, find, quiet, serve, show_url

    from bulkops.simulator import FaultShares, Limit

    clock = FakeClock()
    async with serve(quiet(project_limit=Limit(1)), clock) as (sim, session):
        p, i = find(sim, "STOPPED")
        _, j = find(sim, "STOPPED", skip=1)
        first = await call(session, "PUT", f"{show_url(sim, p, i)}/start")
        second = await call(session, "PUT", f"{show_url(sim, p, j)}/start")
    assert first[0] == 200 and (second[0], second[2]["error_code"]) == (429, "APIG.0308")
    async with serve(quiet(faults=FaultShares(applied_then_503=1.0)), clock) as (sim, session):
        p, i = find(sim, "STOPPED")
        status, _, _ = await call(session, "PUT", f"{show_url(sim, p, i)}/start")
        assert status == 503 and sim.instances.status(p, i)[0] == "STARTING"  # type: ignore[index]
