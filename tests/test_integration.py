"""A whole bulk stop against the simulator on 127.0.0.1: mixed statuses, bad rows, duplicates, limits."""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from bulkops.cloud.auth import Credentials
from bulkops.engine import stop_instances
from bulkops.io.report import FIELDS, ReportWriter
from bulkops.io.targets import read_targets
from bulkops.models import Outcome, Result
from bulkops.options import Options, RateLimit, RetryPolicy
from bulkops.simulator import (
    AccessKey,
    FaultShares,
    InventorySpec,
    Limit,
    Simulator,
    SimulatorConfig,
    run_simulator,
    write_csv,
)

pytestmark = pytest.mark.anyio

AK, SK = "AKINTEGRATION", "sk-integration-secret"
LIMIT = 40
BAD = (
    "{p},NOT-AN-ID\n{p},62383738-E52A-450A-9F84-F9E705402BE8\n../etc,62383738-e52a-450a-9f84-f9e705402be8\n\n"
)


def expected(sim: Simulator, project_id: str, instance_id: str) -> set[Outcome]:
    """The outcomes a correct tool may report for an instance, from its initial status."""
    status = sim.inventory.initial_status(project_id, instance_id)
    if status is None:
        return {Outcome.NOT_FOUND}
    if status == "RUNNING":
        # "applied, then 503": the retry then reads 6308, which counts as already stopped.
        return {Outcome.ACCEPTED, Outcome.ALREADY_STOPPED}
    if status in ("STOPPED", "STOPPING"):
        return {Outcome.ALREADY_STOPPED}
    return {Outcome.FAILED}


async def test_mixed_run_every_row_one_correct_record(tmp_path: Path) -> None:
    """Every input line gets exactly one correct record, no stop follows a success, limits hold."""
    spec = InventorySpec(projects=4, instances_per_project=80, unknown_share=0.05, seed=11)
    config = SimulatorConfig(
        seed=11,
        inventory=spec,
        access_keys=(AccessKey(AK, SK),),
        project_limit=Limit(LIMIT),
        faults=FaultShares(http_500=0.02, http_503=0.03, reset=0.02, applied_then_503=0.03),
        latency=0.002,
        jitter=0.004,
    )
    csv_path = tmp_path / "in.csv"
    async with run_simulator(config) as sim:
        write_csv(sim.inventory, csv_path, order="project")
        p0 = sim.inventory.project_ids[0]
        lines = csv_path.read_text().splitlines()
        with csv_path.open("a") as fh:
            fh.write(BAD.format(p=p0))
            fh.write(lines[1] + "\n")  # duplicate of the first data row
            fh.write(lines[2] + "\n")
        options = Options(
            endpoint=sim.url,
            credentials=Credentials(ak=AK, sk=SK),
            rate=RateLimit(LIMIT),
            concurrency=16,
            timeout=2.0,
            retry=RetryPolicy(max_attempts=6, base_delay=0.05, max_delay=0.5),
        )
        buf = io.StringIO()
        writer = ReportWriter(buf)
        async with stop_instances(read_targets(csv_path, default_project=None), options) as run:
            async for batch in run.batches():
                writer.write_many(batch)
        log = list(sim.request_log)
        records = [json.loads(x) for x in buf.getvalue().splitlines()]

        # Exactly one record per non-blank input line.
        all_lines = csv_path.read_text().splitlines()
        data_lines = [n for n, text in enumerate(all_lines, start=1) if n > 1 and text.strip()]
        assert sorted(r["line"] for r in records) == data_lines
        for r in records:
            assert tuple(r) == FIELDS

        by_outcome = Counter(r["outcome"] for r in records)
        assert by_outcome["invalid"] == 3
        assert by_outcome["skipped"] == 2
        for r in records:
            if r["outcome"] in ("invalid", "skipped"):
                continue
            assert Outcome(r["outcome"]) in expected(sim, r["project_id"], r["id"]), r

        # No stop after a success answer (200, 6307, 6308), per instance, in arrival order.
        done: set[tuple[str, str]] = set()
        for rec in log:
            key = (rec.project_id, rec.id)
            if rec.method != "PUT":
                continue
            assert key not in done, f"stop sent after success for {key}"
            if rec.http_status == 200 or rec.error_code in ("ModelArts.6307", "ModelArts.6308"):
                done.add(key)

        # Invalid rows never reached the server.
        assert all(rec.project_id != "../etc" and rec.id.islower() for rec in log)

        # No project went over its limit: at most LIMIT + burst arrivals in any one-second window.
        arrivals: dict[str, list[float]] = defaultdict(list)
        for rec in log:
            arrivals[rec.project_id].append(rec.time)
        for times in arrivals.values():
            times.sort()
            j = 0
            for i, t in enumerate(times):
                while times[j] < t - 1.0:
                    j += 1
                assert i - j + 1 <= 2 * LIMIT + 2


async def test_results_are_streamed_before_the_run_ends() -> None:
    """Results arrive while the run goes on, not all at the end (the report is a live checkpoint)."""
    spec = InventorySpec(projects=1, instances_per_project=60, status_mix={"RUNNING": 1.0}, seed=3)
    config = SimulatorConfig(seed=3, inventory=spec, auth_enabled=False, project_limit=Limit(30))
    async with run_simulator(config) as sim:
        buf = io.StringIO()
        write_csv(sim.inventory, buf)
        buf.seek(0)
        options = Options(endpoint=sim.url, rate=RateLimit(30.0, 1), concurrency=4)
        seen_before_end: list[int] = []
        async with stop_instances(read_targets(buf, default_project=None), options) as run:
            first: Result | None = None
            async for r in run:
                if first is None:
                    first = r
                    seen_before_end.append(
                        sim.stats.total_requests
                        if hasattr(sim.stats, "total_requests")
                        else len(sim.request_log)
                    )
        assert seen_before_end and seen_before_end[0] < 60
        assert run.stats.outcomes == {"accepted": 60}


@pytest.mark.slow
def test_limits_far_below_rate_fail_no_row_through_the_cli(tmp_path: Path) -> None:
    """Issue 11's case: 4 projects limited to 5, 10, 25, 50/s, `bulkops stop --rate 100 --burst 100` with
    the default retry policy: every row accepted, exit 0, and 429s a small share of the requests."""
    from _reliability import SimThread, cli_env, spawn

    from bulkops.simulator.inventory import make_inventory

    limits = (5, 10, 25, 50)
    spec = InventorySpec(projects=4, instances_per_project=750, status_mix={"RUNNING": 1.0}, seed=11)
    projects = make_inventory(spec).project_ids
    config = SimulatorConfig(
        seed=11,
        inventory=spec,
        auth_enabled=False,
        latency=0.05,
        project_limits={p: Limit(n) for p, n in zip(projects, limits, strict=True)},
    )
    csv = tmp_path / "fleet.csv"
    lines = ["project_id,id"]
    inventory = make_inventory(spec)
    for p, n in zip(projects, limits, strict=True):  # fifteen seconds of each project's limit
        lines += [f"{p},{i}" for (i, _s), _ in zip(inventory.iter_instances(p), range(15 * n), strict=False)]
    csv.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.jsonl"
    with SimThread(config) as sim:
        proc = spawn(
            ["stop", str(csv), "--endpoint", sim.url, "--rate", "100", "--burst", "100", "--yes",
             "--report", str(report)],
            cli_env(),
        )  # fmt: skip
        _out, err = proc.communicate(timeout=90)
        totals = sim.stats.totals()
        requests, throttled = totals.requests, totals.throttled
    assert proc.returncode == 0, err.decode()[-2000:]
    outcomes = Counter(json.loads(line)["outcome"] for line in report.read_text().splitlines())
    assert outcomes == {"accepted": 1350}
    assert throttled <= 0.05 * requests, (throttled, requests)
