"""Signals: Ctrl-C (SIGINT) or SIGTERM in the middle of a run, as a real process, against a slow simulator.

Once: stop taking rows, let in-flight requests finish within the grace period (10 s), write the report,
print the summary, exit 130. Twice: end at once, still with the report written and the summary printed.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _reliability import SimThread, cli_env, count_lines, kill, spawn

from bulkops.simulator import FaultShares, InventorySpec, Limit, SimulatorConfig, write_csv

GRACE = 10.0  # Options.grace, the CLI's default


def fleet(rows: int, seed: int) -> InventorySpec:
    """One project of RUNNING instances."""
    return InventorySpec(projects=1, instances_per_project=rows, status_mix={"RUNNING": 1.0}, seed=seed)


def wait_until(check: object, timeout: float, what: str) -> None:
    """Poll `check()` every 10 ms until true; fail after `timeout` seconds."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def check_interrupted(proc: subprocess.Popen[bytes], report: Path, err: bytes, total: int) -> int:
    """Exit 130, no traceback, the summary on stderr, and a report of whole records matching it."""
    text = err.decode(errors="replace")
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert "interrupted: run again with --resume" in text
    summary = re.search(r"bulkops stop: (\d+) rows", text)
    assert summary is not None, text
    data = report.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    records = [json.loads(line) for line in data.splitlines()]
    assert len(records) == int(summary[1])  # everything counted was written
    assert len({r["line"] for r in records}) == len(records) < total
    return len(records)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_one_signal_mid_run_exits_130_with_report_and_summary(tmp_path: Path, signum: int) -> None:
    """SIGINT or SIGTERM mid-run: exit 130 within the grace period, report flushed, summary printed."""
    rows = 400
    config = SimulatorConfig(seed=1, inventory=fleet(rows, 1), auth_enabled=False, project_limit=Limit(40))
    csv_path, report = tmp_path / "in.csv", tmp_path / "r.jsonl"
    with SimThread(config) as sim:
        write_csv(sim.inventory, csv_path)
        args = ["stop", str(csv_path), "--endpoint", sim.url, "--yes", "--report", str(report)]
        proc = spawn([*args, "--rate", "40", "--concurrency", "8", "--log-format", "json"], cli_env())
        try:
            wait_until(lambda: count_lines(report) >= 20 or proc.poll() is not None, 30, "20 report lines")
            assert proc.poll() is None, "the run ended before it could be interrupted"
            sent_at = time.monotonic()
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=GRACE + 10)
            took = time.monotonic() - sent_at
        finally:
            kill(proc)
    written = check_interrupted(proc, report, err, rows)
    assert written >= 20
    assert took < GRACE + 5  # bounded: in-flight requests finish well within the grace period
    assert "bulkops.run.interrupt" in err.decode() and signal.Signals(signum).name in err.decode()


def test_second_sigint_ends_at_once(tmp_path: Path) -> None:
    """A second SIGINT while in-flight requests hang ends the run at once, report readable, summary shown."""
    rows = 200
    config = SimulatorConfig(
        seed=2,
        inventory=fleet(rows, 2),
        auth_enabled=False,
        faults=FaultShares(hang=0.5),
        hang_seconds=120.0,
    )
    csv_path, report = tmp_path / "in.csv", tmp_path / "r.jsonl"
    concurrency = 4
    thread = SimThread(config)
    with thread as sim:
        write_csv(sim.inventory, csv_path)
        args = ["stop", str(csv_path), "--endpoint", sim.url, "--yes", "--report", str(report)]
        args += ["--concurrency", str(concurrency), "--timeout", "120", "--log-format", "json"]
        proc = spawn(args, cli_env())
        try:
            # Every worker is stuck on a request that will not be answered for two minutes.
            wait_until(
                lambda: thread.call(lambda s: s.stats.totals().faults.get("hang", 0)) >= concurrency,
                30,
                "every worker to hang",
            )
            wait_until(lambda: count_lines(report) >= 1, 10, "a first record")
            proc.send_signal(signal.SIGINT)
            time.sleep(1.0)
            assert proc.poll() is None, "the first SIGINT must wait for in-flight requests (grace period)"
            second = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=GRACE)
            took = time.monotonic() - second
        finally:
            kill(proc)
    check_interrupted(proc, report, err, rows)
    assert took < GRACE - 1  # it did not sit out the grace period, let alone the two-minute hang
    assert "bulkops.run.abort" in err.decode()
