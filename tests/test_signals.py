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

from bulkops.cli.interrupts import Burst, Decision
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
    summary = re.search(r"bulkops stop: (\d+) rows?\b", text)
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
            time.sleep(1.5)  # more than the 1 s within which a second signal is the same request
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


def records_of(report: Path) -> list[dict[str, object]]:
    """Every record of a report (none when it does not exist)."""
    return [json.loads(line) for line in report.read_bytes().splitlines()] if report.exists() else []


def test_two_sigterms_at_once_are_one_graceful_stop(tmp_path: Path) -> None:
    """Two SIGTERMs 50 ms apart(as `timeout` sends) are one graceful stop: every stop sent is recorded."""
    rows = 300
    config = SimulatorConfig(seed=5, inventory=fleet(rows, 5), auth_enabled=False, latency=0.4)
    csv_path, report = tmp_path / "in.csv", tmp_path / "r.jsonl"
    thread = SimThread(config)
    with thread as sim:
        write_csv(sim.inventory, csv_path)
        args = ["stop", str(csv_path), "--endpoint", sim.url, "--yes", "--report", str(report)]
        proc = spawn([*args, "--rate", "100", "--concurrency", "8", "--log-format", "json"], cli_env())
        try:
            wait_until(lambda: count_lines(report) >= 8 or proc.poll() is not None, 30, "8 report lines")
            assert proc.poll() is None, "the run ended before it could be interrupted"
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=GRACE + 10)
        finally:
            kill(proc)
        log = thread.snapshot()
    check_interrupted(proc, report, err, rows)
    assert "bulkops.run.abort" not in err.decode()
    sent = {r.id for r in log if r.method == "PUT"}
    recorded = {str(r["id"]) for r in records_of(report)}
    assert sent == recorded  # the stops in flight at the signals were finished and recorded


def _blocked_on_stdin(pid: int) -> bool:
    """True when process `pid` waits in read(2) on its standard input (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] == "0" and int(fields[1], 16) == 0


@pytest.mark.skipif(not Path("/proc/self/syscall").exists(), reason="needs Linux /proc/PID/syscall")
@pytest.mark.parametrize("signals", [1, 2], ids=["one SIGTERM", "two SIGTERMs"])
def test_sigterm_before_the_run_starts_exits_130_with_summary(tmp_path: Path, signals: int) -> None:
    """SIGTERM while bulkops is still starting (waiting for its first input row): exit 130, summary, nothing
    sent, no traceback, rather than death by the signal."""
    config = SimulatorConfig(seed=6, inventory=fleet(4, 6), auth_enabled=False)
    report = tmp_path / "r.jsonl"
    thread = SimThread(config)
    with thread as sim:
        args = ["stop", "-", "--endpoint", sim.url, "--yes", "--report", str(report), "--log-format", "json"]
        proc = spawn(args, cli_env(), stdin=subprocess.PIPE)
        try:
            assert proc.stdin is not None
            wait_until(lambda: _blocked_on_stdin(proc.pid) or proc.poll() is not None, 30, "a read on stdin")
            for _ in range(signals):
                proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
        finally:
            kill(proc)
        log = thread.snapshot()
    text = err.decode(errors="replace")
    assert proc.returncode == 130, text
    assert "Traceback" not in text
    assert "bulkops stop: 0 rows" in text and "interrupted: run again with --resume" in text
    assert log == []
    assert records_of(report) == []


def test_signals_within_a_second_of_the_first_are_one_request() -> None:
    """A burst of signals (within 1 s of the first) asks for one graceful stop; a later one aborts; then
    nothing more happens (decisions on a fake clock)."""
    burst = Burst(window=1.0)
    assert burst.decide(100.0) is Decision.INTERRUPT
    assert burst.decide(100.0) is Decision.SAME
    assert burst.decide(100.999) is Decision.SAME
    assert burst.decide(101.0) is Decision.ABORT
    assert burst.decide(101.001) is Decision.IGNORED
    assert burst.decide(500.0) is Decision.IGNORED
