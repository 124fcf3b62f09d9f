"""A job over several hosts when Redis goes away mid-job (issue 15): restarted with its data (the job goes
on), restarted without it or gone for good (exit 1, one line; `--resume` without Redis finishes the report).

Real `python -m bulkops` processes, a real redis-server stopped with SIGKILL and started on the same port,
the simulator as the cloud (4 projects at 20/s). Every wait is bounded (RUN_TIMEOUT).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from _redis import RedisServer
from _reliability import SimThread, cli_env, kill, spawn, stops_after_success
from test_job import (
    CONCURRENCY,
    LIMIT,
    RUN_TIMEOUT,
    _config,
    _coordinator,
    _input,
    _one_each,
    _records,
    _start_when_job_exists,
    _wait,
    _worker,
)

pytestmark = pytest.mark.slow

SUCCESS = {"accepted", "already_stopped"}


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err[-2000:]
    return [line for line in err.splitlines() if line.startswith("bulkops: error:")]


def _resume_without_redis(inp: Path, sim_url: str, report: Path) -> list[str]:
    return [
        "stop", str(inp), "--endpoint", sim_url, "--rate", str(LIMIT), "--no-slow-start", "--yes",
        "--report", str(report), "--concurrency", str(CONCURRENCY), "--resume", "--log-format", "json",
    ]  # fmt: skip


def _finish_without_redis(sim: object, inp: Path, report: Path, rows: int) -> None:
    """`--resume` without --redis/--job completes the report: one record per line, and no stop is sent
    for a row the report already recorded as a success."""
    recorded = {(r["project_id"], r["id"]) for r in _records(report) if r["outcome"] in SUCCESS}
    before = len(sim.request_log)  # type: ignore[attr-defined]  # nothing in flight: safe to read
    again = spawn(_resume_without_redis(inp, sim.url, report), cli_env())  # type: ignore[attr-defined]
    try:
        err = _wait(again, time.monotonic() + RUN_TIMEOUT)
    finally:
        kill(again)
    assert again.returncode == 0, err[-2000:]
    _one_each(_records(report), rows)
    later = list(sim.request_log)[before:]  # type: ignore[attr-defined]
    assert [
        (r.project_id, r.id) for r in later if r.method == "PUT" and (r.project_id, r.id) in recorded
    ] == []


def test_redis_restarted_with_its_data_the_job_completes(tmp_path: Path) -> None:
    """Redis (appendonly yes) killed 2.5 s into a coordinator-and-worker job and started again 2 s later:
    rows in flight finish, their finals are replayed, claims resume, and both exit 0 with one record per
    row. --redis-grace is 30 s (not 300) so that a regression fails in seconds instead of hanging."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.workdir.mkdir()
    server.start()
    report, inp = tmp_path / "r.jsonl", tmp_path / "in.csv"
    grace = ("--redis-grace", "30")
    with SimThread(_config(4, 150)) as sim:
        rows = _input(sim, inp)
        coord = spawn(_coordinator(inp, sim.url, server.url, report, *grace), cli_env())
        workers: list[subprocess.Popen[bytes]] = []
        try:
            workers = _start_when_job_exists(server.url, sim.url, 1)
            time.sleep(2.5)
            server.stop()
            time.sleep(2.0)
            server.start()
            deadline = time.monotonic() + RUN_TIMEOUT
            err = _wait(coord, deadline)
            werr = _wait(workers[0], deadline)
        finally:
            for proc in [coord, *workers]:
                kill(proc)
            server.stop()
        log = sim.request_log
    assert coord.returncode == 0, err[-2000:]
    assert workers[0].returncode == 0, werr[-2000:]
    records = _records(report)
    _one_each(records, rows)
    assert {r["outcome"] for r in records} <= SUCCESS
    assert len(stops_after_success(log)) <= CONCURRENCY
    print(
        f"rows reclaimed after Redis came back: {err.count('job.reclaimed')}, {werr.count('job.reclaimed')}"
    )


def test_redis_restarted_without_its_data_exits_1_and_resume_finishes(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis (no persistence) killed 2.5 s into a coordinator-and-worker job and started again empty: both
    stop with one line (the job is gone from Redis), exit 1; `--resume` without --redis/--job finishes the
    report from the local one, sending nothing for a row it recorded as a success. --redis-grace is 20 s:
    the job's absence, not the grace, must end it."""
    report, inp = tmp_path / "r.jsonl", tmp_path / "in.csv"
    with SimThread(_config(4, 150)) as sim:
        rows = _input(sim, inp)
        coord = spawn(_coordinator(inp, sim.url, redis_server.url, report, "--redis-grace", "20"), cli_env())
        workers: list[subprocess.Popen[bytes]] = []
        try:
            workers = _start_when_job_exists(redis_server.url, sim.url, 1)
            time.sleep(2.5)
            redis_server.stop()
            time.sleep(1.0)
            redis_server.start()
            deadline = time.monotonic() + 30.0
            err = _wait(coord, deadline)
            werr = _wait(workers[0], deadline)
        finally:
            for proc in [coord, *workers]:
                kill(proc)
        assert coord.returncode == 1, err[-2000:]
        assert workers[0].returncode == 1, werr[-2000:]
        for text in (err, werr):
            lines = _error_lines(text)
            assert len(lines) == 1 and "gone from Redis" in lines[0], text[-2000:]
        assert 0 < len(_records(report)) < rows
        _finish_without_redis(sim, inp, report, rows)
        # sent again: only rows the worker finished whose finals died with Redis (at most what it held)
        assert len(stops_after_success(sim.request_log)) <= 2 * CONCURRENCY


def test_redis_gone_for_longer_than_the_grace_exits_1_and_resume_finishes(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Redis killed 2.5 s into a coordinator-only job and not started again: after --redis-grace (2 s here,
    to keep the test short) the coordinator exits 1 with one line; `--resume` without --redis/--job
    completes the report, and no stop at all is sent twice after a success (the coordinator kept every
    final of its own in the report)."""
    report, inp = tmp_path / "r.jsonl", tmp_path / "in.csv"
    with SimThread(_config(4, 150)) as sim:
        rows = _input(sim, inp)
        coord = spawn(_coordinator(inp, sim.url, redis_server.url, report, "--redis-grace", "2"), cli_env())
        try:
            time.sleep(2.5)
            redis_server.stop()
            started = time.monotonic()
            err = _wait(coord, started + 30.0)
            waited = time.monotonic() - started
        finally:
            kill(coord)
        assert coord.returncode == 1, err[-2000:]
        lines = _error_lines(err)
        assert len(lines) == 1 and "--redis-grace" in lines[0], err[-2000:]
        assert waited < 15.0, f"gave up {waited:.1f} s after Redis went"
        _finish_without_redis(sim, inp, report, rows)
        assert stops_after_success(sim.request_log) == []
        print(json.dumps({"gave_up_after_s": round(waited, 1)}))


def test_workers_give_up_after_the_grace_with_one_line(tmp_path: Path, redis_server: RedisServer) -> None:
    """Redis killed 2.5 s into a coordinator-and-worker job and not started again: the worker and the
    coordinator each exit 1 with one line naming --redis-grace (2 s here, to keep the test short), within
    seconds of the grace."""
    report, inp = tmp_path / "r.jsonl", tmp_path / "in.csv"
    grace = ("--redis-grace", "2")
    with SimThread(_config(4, 150)) as sim:
        _input(sim, inp)
        coord = spawn(_coordinator(inp, sim.url, redis_server.url, report, *grace), cli_env())
        workers: list[subprocess.Popen[bytes]] = []
        try:
            workers = _start_when_job_exists(redis_server.url, sim.url, 0)
            workers = [spawn([*_worker(redis_server.url, sim.url), *grace], cli_env())]
            time.sleep(2.5)
            redis_server.stop()
            started = time.monotonic()
            errs = [_wait(proc, started + 30.0) for proc in (coord, workers[0])]
            waited = time.monotonic() - started
        finally:
            for proc in [coord, *workers]:
                kill(proc)
    assert [coord.returncode, workers[0].returncode] == [1, 1], [e[-1000:] for e in errs]
    for err in errs:
        lines = _error_lines(err)
        assert len(lines) == 1 and "--redis-grace" in lines[0], err[-2000:]
    assert waited < 15.0, f"gave up {waited:.1f} s after Redis went"


def test_a_claim_whose_answer_was_lost_is_held_again(redis_server: RedisServer) -> None:
    """A row Redis gave this worker while the answer was lost (connection cut after XREADGROUP ran) is
    found in the worker's pending list once Redis answers again and held, not left pending forever (a live
    worker's rows are never reaped); rows it holds already are not taken twice."""
    import anyio

    from bulkops.job.grace import Grace
    from bulkops.job.keys import GROUP, JobKeys
    from bulkops.job.source import JobSource
    from bulkops.redis.client import open_client

    class Flow:
        def notify(self) -> None:
            pass

    async def main() -> list[int]:
        client = open_client(redis_server.url)
        keys = JobKeys("lost")
        stream = keys.stream("p1")
        await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
        for line in (2, 3):
            await client.xadd(stream, {"l": line, "i": f"i{line}"})
        got = await client.xreadgroup(GROUP, "w1", {stream: ">"}, count=2)  # both claimed by w1
        grace = Grace(30.0)
        source = JobSource(client, keys, "w1", None, None, Flow(), concurrency=4, grace=grace)  # type: ignore[arg-type]
        source.projects.add("p1")
        source._hold("p1", got[0][1][0][0], got[0][1][0][1])  # line 2 held; line 3's answer was lost
        grace.trouble(OSError("cut"), "claiming rows")
        grace.ok()  # Redis is back
        assert await source._reconcile()
        await client.aclose()
        return [job.target.line for job in source.front]

    assert anyio.run(main) == [3]
