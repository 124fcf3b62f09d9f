"""Failures that repeat: refused credentials, a forbidden project, an outage. The tool must stop early.

* 401 for everything (a wrong SK) and 403 for one project (`forbidden_projects`): after
  `Options.circuit_threshold` refusals in a row the project's circuit opens, its other rows are `skipped`
  with the reason, and other projects go on untouched. Requests per refused project are bounded by
  threshold + concurrency (the requests already in flight when the circuit opened).
* An outage (the simulator's first `outage_requests` requests answer 503): the retry budget
  (`budget_ratio` of first attempts plus `budget_floor`) caps the retries, so the outage costs about one
  request per row instead of `max_attempts`, and once it ends the rest of the run goes through.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

from bulkops.cloud.auth import Credentials
from bulkops.engine import stop_instances
from bulkops.engine.worker import ENDPOINT_CIRCUIT
from bulkops.models import (
    CIRCUIT_OPEN,
    CONNECTION_ERROR,
    ENDPOINT_UNREACHABLE,
    RETRY_BUDGET,
    Outcome,
    Reply,
    Result,
    Target,
)
from bulkops.options import Options, RateLimit, RetryPolicy
from bulkops.simulator import AccessKey, InventorySpec, SimulatorConfig, run_simulator
from bulkops.summary import RunStats

pytestmark = pytest.mark.anyio

AK, SK = "AKCIRCUITTEST", "sk-circuit-right"
CONCURRENCY = 8
THRESHOLD = Options(endpoint="http://127.0.0.1").circuit_threshold
FAST = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05)


def fleet(projects: int, per_project: int, seed: int) -> InventorySpec:
    """A fleet of RUNNING instances only."""
    return InventorySpec(
        projects=projects, instances_per_project=per_project, status_mix={"RUNNING": 1.0}, seed=seed
    )


def targets_of(config: SimulatorConfig, project_ids: Sequence[str]) -> list[Target]:
    """Every instance of the given projects, grouped by project (as CSV exports usually are)."""
    from bulkops.simulator.inventory import make_inventory

    inventory = make_inventory(config.inventory)
    out: list[Target] = []
    for p in project_ids:
        for i, _status in inventory.iter_instances(p):
            out.append(Target(len(out) + 2, p, i))
    return out


async def run_all(targets: list[Target], options: Options) -> list[Result]:
    """Run the engine to the end and collect its results."""
    results: list[Result] = []
    async with stop_instances(targets, options) as run:
        async for r in run:
            results.append(r)
    return results


async def test_wrong_secret_opens_every_circuit_and_bounds_requests() -> None:
    """With a wrong SK (all 401), each project stops after a few refusals: the rest is skipped, not sent."""
    config = SimulatorConfig(seed=5, inventory=fleet(3, 60, 5), access_keys=(AccessKey(AK, SK),))
    async with run_simulator(config) as sim:
        projects = sim.inventory.project_ids
        targets = targets_of(config, projects)
        options = Options(
            endpoint=sim.url,
            credentials=Credentials(ak=AK, sk="sk-circuit-WRONG"),
            rate=RateLimit(500.0),
            concurrency=CONCURRENCY,
            retry=FAST,
        )
        results = await run_all(targets, options)
        per_project_requests = {p: sim.stats.project(p).requests for p in projects}
        statuses = Counter(rec.http_status for rec in sim.request_log)

    assert sorted(r.line for r in results) == [t.line for t in targets]
    assert set(statuses) == {401}
    for p in projects:
        mine = [r for r in results if r.project_id == p]
        outcomes = Counter(r.outcome for r in mine)
        assert set(outcomes) == {Outcome.FAILED, Outcome.SKIPPED}
        assert THRESHOLD <= outcomes[Outcome.FAILED] <= THRESHOLD + CONCURRENCY
        assert per_project_requests[p] <= THRESHOLD + CONCURRENCY
        for r in mine:
            if r.outcome is Outcome.FAILED:
                assert r.http_status == 401 and r.attempts == 1  # never retried
            else:
                assert r.error_code == CIRCUIT_OPEN and r.attempts == 0
                assert r.error_msg is not None and "refused authentication" in r.error_msg
    assert sum(per_project_requests.values()) <= len(projects) * (THRESHOLD + CONCURRENCY)


async def test_forbidden_project_is_cut_off_and_others_are_untouched() -> None:
    """A project answering 403 opens its circuit; every other project's rows are stopped as usual."""
    config0 = SimulatorConfig(seed=6, inventory=fleet(3, 50, 6))
    async with run_simulator(config0) as scout:
        projects = scout.inventory.project_ids
    forbidden = projects[1]
    config = SimulatorConfig(
        seed=6,
        inventory=fleet(3, 50, 6),
        access_keys=(AccessKey(AK, SK),),
        forbidden_projects=frozenset({forbidden}),
    )
    async with run_simulator(config) as sim:
        targets = targets_of(config, projects)
        options = Options(
            endpoint=sim.url,
            credentials=Credentials(ak=AK, sk=SK),
            rate=RateLimit(500.0),
            concurrency=CONCURRENCY,
            retry=FAST,
        )
        results = await run_all(targets, options)
        requests = {p: sim.stats.project(p).requests for p in projects}

    assert sorted(r.line for r in results) == [t.line for t in targets]
    for p in projects:
        mine = [r for r in results if r.project_id == p]
        if p == forbidden:
            outcomes = Counter(r.outcome for r in mine)
            assert THRESHOLD <= outcomes[Outcome.FAILED] <= THRESHOLD + CONCURRENCY
            assert outcomes[Outcome.SKIPPED] == len(mine) - outcomes[Outcome.FAILED]
            assert all(r.http_status == 403 for r in mine if r.outcome is Outcome.FAILED)
            assert all(r.error_code == CIRCUIT_OPEN for r in mine if r.outcome is Outcome.SKIPPED)
            assert requests[p] <= THRESHOLD + CONCURRENCY
        else:
            assert all(r.outcome is Outcome.ACCEPTED for r in mine), Counter(r.outcome for r in mine)
            assert requests[p] == len(mine)  # one request per row: nothing else was disturbed


async def test_outage_spends_the_budget_fails_fast_then_recovers() -> None:
    """During an outage (every answer 503) retries stay within the budget; after it, later rows succeed."""
    rows, outage = 1000, 300
    config = SimulatorConfig(
        seed=8, inventory=fleet(2, rows // 2, 8), auth_enabled=False, outage_requests=outage
    )
    async with run_simulator(config) as sim:
        targets = targets_of(config, sim.inventory.project_ids)
        options = Options(endpoint=sim.url, rate=RateLimit(2000.0), concurrency=CONCURRENCY, retry=FAST)
        async with stop_instances(targets, options) as run:
            results = [r async for r in run]
        stats = run.stats
        total = sim.stats.totals()

    ratio, floor = FAST.budget_ratio, FAST.budget_floor
    assert sorted(r.line for r in results) == [t.line for t in targets]
    assert total.faults == {"outage": outage}
    # Bounded traffic: retries are at most the floor plus `ratio` of first attempts.
    assert stats.retries <= floor + ratio * rows
    assert total.requests <= rows * (1 + ratio) + floor
    # Without a budget the outage would have cost up to max_attempts requests per row it touched; with it,
    # most rows caught in it failed after one attempt, naming the budget.
    failed = [r for r in results if r.outcome is Outcome.FAILED]
    assert failed and all(r.http_status == 503 for r in failed)
    assert sum(r.error_code == RETRY_BUDGET for r in failed) >= len(failed) // 2
    assert len(failed) > outage // FAST.max_attempts
    # The outage ended mid-run: everything after it went through (projects are served fairly, so the
    # outage hit the first rows of each project; the second half of each went through).
    assert len(failed) <= outage
    for p in {t.project_id for t in targets}:
        mine = sorted((r for r in results if r.project_id == p), key=lambda r: r.line)
        assert all(r.outcome is Outcome.ACCEPTED for r in mine[len(mine) // 2 :])
    print(f"outage: {total.requests} requests for {rows} rows, {stats.retries} retries, {len(failed)} failed")


class _Unreachable:
    """A client whose requests never connect until `answer_after` of them have failed (then 200s)."""

    def __init__(self, answer_first: bool = False) -> None:
        self.sent = 0
        self.answer_first = answer_first

    async def stop(self, project_id: str, instance_id: str) -> Reply:
        self.sent += 1
        if self.answer_first and self.sent == 1:
            return Reply(200, status="STOPPING")
        return Reply(None, error_code=CONNECTION_ERROR, error_msg="ClientConnectorError: connection refused")

    async def show(self, project_id: str, instance_id: str) -> Reply:
        return await self.stop(project_id, instance_id)


async def test_an_endpoint_that_never_connects_stops_the_run_early() -> None:
    """No request of the run can connect (refused, no such host): after ENDPOINT_CIRCUIT failures the rest
    of the rows are `skipped` (bulkops.endpoint_unreachable, not sent), those sent are `failed`; each row
    one record, and the requests sent stay within the circuit's count plus those in flight."""
    targets = [Target(n + 2, f"{n % 3 + 1:032x}", f"{n:08x}-0000-4000-8000-000000000000") for n in range(300)]
    client = _Unreachable()
    options = Options(endpoint="http://127.0.0.1:1", rate=RateLimit(1000.0), concurrency=CONCURRENCY)
    results: list[Result] = []
    stats = RunStats()
    async with stop_instances(targets, options, client=client, stats=stats) as run:
        async for r in run:
            results.append(r)
    assert sorted(r.line for r in results) == [t.line for t in targets]
    kinds = Counter((r.outcome, r.error_code) for r in results)
    assert set(kinds) == {(Outcome.SKIPPED, ENDPOINT_UNREACHABLE), (Outcome.FAILED, ENDPOINT_UNREACHABLE)}
    assert client.sent <= ENDPOINT_CIRCUIT + CONCURRENCY
    assert stats.unreachable is not None and "unreachable" in stats.render()


async def test_an_endpoint_that_answered_once_is_not_given_up_for_connection_errors() -> None:
    """Once the endpoint has answered, connection errors are retried row by row as before (a flaky
    network is not an unreachable endpoint): no row is skipped."""
    targets = [Target(n + 2, f"{1:032x}", f"{n:08x}-0000-4000-8000-000000000000") for n in range(30)]
    client = _Unreachable(answer_first=True)
    fast = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.002)
    options = Options(endpoint="http://127.0.0.1:1", rate=RateLimit(1000.0), concurrency=1, retry=fast)
    results: list[Result] = []
    async with stop_instances(targets, options, client=client) as run:
        async for r in run:
            results.append(r)
    assert all(r.outcome is not Outcome.SKIPPED for r in results)
    assert client.sent > ENDPOINT_CIRCUIT
