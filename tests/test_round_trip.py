"""Issue 16, the morning after: stop a fleet in the evening, start from the stop's report in the morning.

The whole round trip as a user types it (`bulkops stop`, then `bulkops start --from-report`), against a
signed, throttling, faulty simulator on 127.0.0.1: what ran before runs after, and nothing that was
stopped before was started.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _reliability import CLEAN_ENV
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner

from bulkops.cli.main import main
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

AK, SK = "AKROUNDTRIP000000001", "sk-round-trip-secret-never-shown"
#: The simulator's transition time (STOPPING -> STOPPED, STARTING -> RUNNING): longer than a retry takes to
#: come back, as a real stop's minute is, so that a stop applied whose answer was lost is answered "on its
#: way" (6308) on the retry (`operations.acted_on`); a retry that found it already STOPPED (6307) could not
#: be told from an instance stopped before the run.
DELAY = 4.0


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """3 projects of 30 instances, 70 % RUNNING and 30 % STOPPED, limited to 15/s per project, with 503s,
    dropped connections and operations applied whose answer was lost."""
    config = SimulatorConfig(
        seed=16,
        inventory=InventorySpec(
            projects=3, instances_per_project=30, status_mix={"RUNNING": 0.7, "STOPPED": 0.3}, seed=16
        ),
        access_keys=(AccessKey(AK, SK),),
        project_limit=Limit(15),
        faults=FaultShares(http_503=0.04, reset=0.03, applied_then_503=0.06),
        stop_delay=DELAY,
    )
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(run_simulator(config)) as s:
        yield s


def run(*args: str) -> tuple[int, str]:
    """`bulkops ARGS` in-process with the simulator's credentials; (exit code, stderr)."""
    env = {**CLEAN_ENV, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}
    result = CliRunner().invoke(main, list(args), env=env, terminal_width=100)
    return result.exit_code, result.stderr


def statuses(sim: Simulator) -> dict[tuple[str, str], str]:
    """Every instance's status now."""
    now = {}
    for project_id in sim.inventory.project_ids:
        for instance_id, _ in sim.inventory.iter_instances(project_id):
            found = sim.instances.status(project_id, instance_id)
            assert found is not None
            now[(project_id, instance_id)] = found[0]
    return now


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_evening_stop_then_morning_start_from_the_report(sim: Simulator, tmp_path: Path) -> None:
    """Every instance RUNNING before the stop is RUNNING after `start --from-report`, and no instance that
    was STOPPED before was started, through 429s, 503s, resets and lost answers."""
    fleet = tmp_path / "fleet.csv"
    write_csv(sim.inventory, fleet)
    before = statuses(sim)
    assert set(before.values()) == {"RUNNING", "STOPPED"}
    evening, morning = tmp_path / "evening.jsonl", tmp_path / "morning.jsonl"
    common = ["--endpoint", sim.url, "--rate", "40", "--yes", "--no-progress", "--max-attempts", "8"]

    code, err = run("stop", str(fleet), "--report", str(evening), *common)
    assert code == 0, err
    night = time.monotonic() + DELAY * 3
    while set(statuses(sim).values()) != {"STOPPED"} and time.monotonic() < night:
        time.sleep(0.2)  # the night: every stopping instance stops
    assert set(statuses(sim).values()) == {"STOPPED"}
    code, err = run(
        "start", "--from-report", str(evening), "--report", str(morning), *common, "--wait",
        "--poll-interval", "0.5",
    )  # fmt: skip
    assert code == 0, err
    assert "bulkops start:" in err

    after = statuses(sim)
    assert {k for k, v in after.items() if v == "RUNNING"} == {k for k, v in before.items() if v == "RUNNING"}
    started = {(r["project_id"], r["id"]) for r in records(morning)}
    assert started == {k for k, v in before.items() if v == "RUNNING"}
    assert all(r["outcome"] == "running" for r in records(morning))
    faults = {r.fault for r in sim.request_log}
    assert {"applied_then_503", "reset"} <= faults  # the faults really happened
    assert sim.stats.as_dict()["totals"]["throttled"] > 0  # and so did the throttling
    lost = [r for r in records(evening) if r["error_code"] == "ModelArts.6308" and r["attempts"] > 1]
    assert lost and all(before[(str(r["project_id"]), str(r["id"]))] == "RUNNING" for r in lost)


def test_start_from_report_leaves_out_what_was_already_stopped(sim: Simulator, tmp_path: Path) -> None:
    """The dry run of `start --from-report` plans exactly the rows the stop changed, and names the start."""
    fleet = tmp_path / "fleet.csv"
    write_csv(sim.inventory, fleet)
    running = sum(1 for v in statuses(sim).values() if v == "RUNNING")
    evening = tmp_path / "evening.jsonl"
    common = ["--endpoint", sim.url, "--rate", "40", "--yes", "--no-progress", "--max-attempts", "8"]
    assert run("stop", str(fleet), "--report", str(evening), *common)[0] == 0
    code, err = run("start", "--from-report", str(evening), "--dry-run", "--endpoint", sim.url)
    assert code == 0, err
    assert f"bulkops dry run: {running} rows to start in 3 projects" in err
