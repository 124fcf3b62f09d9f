"""Several `bulkops stop --redis` processes at once against one simulator: the limits are shared for real.

Each test runs real `python -m bulkops` processes (the command users run, with its defaults but `--redis`)
against a simulator that throttles each project to 20/s, and a real `redis-server` (tests/_redis.py).
Throughput is measured in `python -m benchmarks shared`, not asserted here; these tests hold what users
rely on: few 429s, no row given up, one record per row, nothing sent again after a success.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest
from _redis import RedisServer
from _reliability import SimThread, cli_env, kill, spawn, stops_after_success

from bulkops.simulator import SimulatorConfig
from bulkops.simulator.config import Limit
from bulkops.simulator.inventory import InventorySpec

pytestmark = pytest.mark.slow

PROJECTS = 2
PER_PROJECT = 150
LIMIT = 20
RUN_TIMEOUT = 90.0


def _config() -> SimulatorConfig:
    spec = InventorySpec(projects=PROJECTS, instances_per_project=PER_PROJECT, status_mix={"RUNNING": 1.0})
    return SimulatorConfig(seed=7, inventory=spec, auth_enabled=False, project_limit=Limit(LIMIT))


def _rows(sim: object) -> list[str]:
    """The fleet as input lines (project_id,id)."""
    return [
        f"{project},{instance}\n"
        for project in sim.inventory.project_ids  # type: ignore[attr-defined]
        for instance, _status in sim.inventory.iter_instances(project)  # type: ignore[attr-defined]
    ]


def _thirds(sim: object, tmp_path: Path) -> list[Path]:
    """The fleet's rows dealt round-robin into three disjoint input files."""
    rows = _rows(sim)
    paths = []
    for k in range(3):
        path = tmp_path / f"part{k}.csv"
        path.write_text("project_id,id\n" + "".join(rows[k::3]))
        paths.append(path)
    return paths


def _stop_args(inp: Path, url: str, report: Path) -> list[str]:
    return ["stop", str(inp), "--endpoint", url, "--rate", str(LIMIT), "--yes", "--report", str(report)]


def _run_all(
    parts: list[Path], url: str, redis_url: str, tmp_path: Path, envs: list[dict[str, str]] | None = None
) -> list[dict[str, object]]:
    """Start one `bulkops stop --redis` per part at once; wait (bounded); return each run's JSON summary."""
    procs = []
    try:
        for k, part in enumerate(parts):
            report = tmp_path / f"r{k}.jsonl"
            args = [
                "stop",
                str(part),
                "--endpoint",
                url,
                "--rate",
                str(LIMIT),
                "--yes",
                "--report",
                str(report),
            ]
            procs.append(spawn([*args, "--redis", redis_url], (envs or [cli_env()] * 3)[k]))
        summaries = []
        deadline = time.monotonic() + RUN_TIMEOUT
        for proc in procs:
            _out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            lines = [json.loads(x) for x in err.decode().splitlines() if '"bulkops.run.summary"' in x]
            assert lines, err.decode()[-2000:]
            summaries.append(lines[-1])
        return summaries
    finally:
        for proc in procs:
            kill(proc)


def _records(tmp_path: Path) -> list[dict[str, object]]:
    return [
        json.loads(line) for k in range(3) for line in (tmp_path / f"r{k}.jsonl").read_text().splitlines()
    ]


def _check_shared(summaries: list[dict[str, object]], tmp_path: Path) -> None:
    requests = sum(int(s["requests"]) for s in summaries)  # type: ignore[call-overload]
    throttled = sum(int(s["throttled"]) for s in summaries)  # type: ignore[call-overload]
    records = _records(tmp_path)
    assert len(records) == PROJECTS * PER_PROJECT
    assert {r["outcome"] for r in records} == {"accepted"}, "no row failed"
    assert throttled <= 0.01 * requests, f"{throttled} 429s in {requests} requests"


def test_three_runners_sharing_redis_draw_at_most_one_percent_429s(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Three runs at once on thirds of one list, each told the project's real limit, sharing one Redis:
    at most 1 % of requests are 429s and every row is stopped (without Redis they draw about 12 %)."""
    with SimThread(_config()) as sim:
        parts = _thirds(sim, tmp_path)
        summaries = _run_all(parts, sim.url, redis_server.url, tmp_path)
    _check_shared(summaries, tmp_path)
    assert all(s["exit_code"] == 0 for s in summaries)


def test_a_runner_whose_clock_is_30_s_off_changes_nothing(tmp_path: Path, redis_server: RedisServer) -> None:
    """One of the three runners lives 30 s in the future (its wall and monotonic clocks): the buckets run
    on Redis time, so the runs still draw at most 1 % 429s and stop every row."""
    shim = tmp_path / "skew"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import time
            _time, _time_ns, _mono = time.time, time.time_ns, time.monotonic
            time.time = lambda: _time() + 30.0
            time.time_ns = lambda: _time_ns() + 30_000_000_000
            time.monotonic = lambda: _mono() + 30.0
            """
        )
    )
    skewed = cli_env(PYTHONPATH=str(shim))
    with SimThread(_config()) as sim:
        parts = _thirds(sim, tmp_path)
        summaries = _run_all(parts, sim.url, redis_server.url, tmp_path, [cli_env(), skewed, cli_env()])
    _check_shared(summaries, tmp_path)
    starts = [json.loads((tmp_path / f"r{k}.jsonl.meta.json").read_text())["started"] for k in range(3)]
    assert starts[1] > starts[0] and starts[1] > starts[2], "the shim did move the runner's clock"


def test_redis_killed_mid_run_and_restarted_loses_no_row_and_resends_no_success(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis dies a second into a run and comes back two seconds later: the runner warns, paces locally,
    goes back to sharing; every row gets exactly one record, and no instance is sent a stop again after
    a success."""
    with SimThread(_config()) as sim:
        inp = tmp_path / "all.csv"
        inp.write_text("project_id,id\n" + "".join(_rows(sim)))
        report = tmp_path / "r.jsonl"
        args = [
            "stop",
            str(inp),
            "--endpoint",
            sim.url,
            "--rate",
            str(LIMIT),
            "--yes",
            "--report",
            str(report),
        ]
        proc = spawn([*args, "--redis", redis_server.url, "--log-level", "info"], cli_env())
        try:
            time.sleep(1.5)
            redis_server.stop()
            time.sleep(2.0)
            redis_server.start()
            _out, err = proc.communicate(timeout=RUN_TIMEOUT)
        finally:
            kill(proc)
        log = sim.request_log
    events = [json.loads(x)["event"] for x in err.decode().splitlines() if x.startswith("{")]
    assert "bulkops.redis.unavailable" in events and "bulkops.redis.back" in events
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(r["line"] for r in records) == list(range(2, PROJECTS * PER_PROJECT + 2))
    assert {r["outcome"] for r in records} == {"accepted"}
    assert stops_after_success(log) == []
    assert proc.returncode == 0, err.decode()[-2000:]
