"""A hostile file system under the report: FIFOs, devices, a second run on the same file, a full disk, a
closed pipe, files that are not reports, resume files built to crash the reader.

Each refusal is one `bulkops: error: ...` line and exit 2 with nothing sent; a write error in mid-run stops
sending, finishes what is in flight, says one line, exits 1 and leaves a report that `--resume` continues.
The runs are real `bulkops` processes (or `run_stop` in-process with a writer that fails on purpose) against
the simulator on 127.0.0.1.
"""

from __future__ import annotations

import errno
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from _reliability import REPO, SimThread, cli_env, count_lines, kill, spawn

from bulkops.errors import ReportError
from bulkops.io.report import ReportWriter, to_record
from bulkops.io.resume import load_resume
from bulkops.io.targets import read_targets
from bulkops.models import Outcome, Result
from bulkops.options import Options, RateLimit
from bulkops.simulator import InventorySpec, SimulatorConfig, write_csv

P = "a" * 32
ID1 = "00000000-0000-4000-8000-000000000001"


def config(rows: int, seed: int, latency: float = 0.0) -> SimulatorConfig:
    """One project of RUNNING instances, no auth."""
    spec = InventorySpec(projects=1, instances_per_project=rows, status_mix={"RUNNING": 1.0}, seed=seed)
    return SimulatorConfig(seed=seed, inventory=spec, auth_enabled=False, latency=latency, stop_delay=3600.0)


def puts(thread: SimThread) -> list[str]:
    """Ids of every stop the simulator received, in order."""
    return [r.id for r in thread.snapshot() if r.method == "PUT"]


def error_lines(err: bytes) -> list[str]:
    """The `bulkops: error:` lines of a run's stderr."""
    return [line for line in err.decode(errors="replace").splitlines() if line.startswith("bulkops: error: ")]


def run_cli(args: list[str], *, timeout: float = 30, memory: int | None = None) -> tuple[int, bytes]:
    """`python -m bulkops ARGS` to the end; (exit code, stderr). `memory` caps its address space."""

    def limit() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    proc = subprocess.run(
        [sys.executable, "-m", "bulkops", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=cli_env(),
        cwd=REPO,
        timeout=timeout,
        preexec_fn=limit,
        check=False,
    )
    return proc.returncode, proc.stderr


def refused(code: int, err: bytes, text: str) -> None:
    """Exit 2, no traceback, exactly one error line, and it says `text`."""
    assert code == 2, err.decode(errors="replace")
    assert b"Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == 1 and text in lines[0] and len(lines[0]) < 400, err.decode(errors="replace")


# -- 7: a FIFO or a device as --report -----------------------------------------------------------------------


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "--resume"])
def test_fifo_as_report_is_refused_up_front(tmp_path: Path, resume: bool) -> None:
    """A FIFO as --report is refused at once (one line, exit 2, nothing sent), not blocking in open()."""
    fifo = tmp_path / "r.jsonl"
    os.mkfifo(fifo)
    thread = SimThread(config(4, 71))
    with thread as sim:
        write_csv(sim.inventory, tmp_path / "in.csv")
        args = ["stop", str(tmp_path / "in.csv"), "--endpoint", sim.url, "--yes", "--report", str(fifo)]
        code, err = run_cli([*args, "--resume"] if resume else args, timeout=20)
        assert puts(thread) == []
    refused(code, err, "not a regular file")


def test_device_as_report_is_refused_up_front(tmp_path: Path) -> None:
    """A character device as --report (/dev/full) is refused up front: one line, exit 2, nothing sent."""
    thread = SimThread(config(4, 72))
    with thread as sim:
        write_csv(sim.inventory, tmp_path / "in.csv")
        args = ["stop", str(tmp_path / "in.csv"), "--endpoint", sim.url, "--yes", "--report", "/dev/full"]
        code, err = run_cli(args)
        assert puts(thread) == []
    refused(code, err, "not a regular file")


# -- 9: one run per report -----------------------------------------------------------------------------------


def test_report_open_takes_an_exclusive_lock(tmp_path: Path) -> None:
    """While one writer holds a report, a second open of it is refused naming the report; free again after."""
    path = tmp_path / "r.jsonl"
    first = ReportWriter.open(str(path), append=True)
    with pytest.raises(ReportError, match=r"r\.jsonl is in use by another bulkops run"):
        ReportWriter.open(str(path), append=True)
    first.close()
    ReportWriter.open(str(path), append=True).close()


def test_second_run_on_the_same_report_is_refused_and_sends_nothing(tmp_path: Path) -> None:
    """Two `bulkops stop --resume` on one report at once: the second is refused (one line naming the report,
    exit 2); every instance is stopped once."""
    rows = 20
    thread = SimThread(config(rows, 73))
    report = tmp_path / "r.jsonl"
    with thread as sim:
        write_csv(sim.inventory, tmp_path / "in.csv")
        args = ["stop", str(tmp_path / "in.csv"), "--endpoint", sim.url, "--yes", "--report", str(report)]
        args += ["--resume", "--rate", "8", "--log-format", "json"]
        report.touch()  # --resume needs an existing report (an empty one starts afresh)
        first = spawn(args, cli_env())
        try:
            deadline = time.monotonic() + 30
            while count_lines(report) < 1 and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert first.poll() is None, "the first run ended before the second started"
            code, err = run_cli(args)
            _, first_err = first.communicate(timeout=30)
        finally:
            kill(first)
        sent = puts(thread)
    refused(code, err, f"--report {report} is in use by another bulkops run")
    assert first.returncode == 0, first_err.decode(errors="replace")
    assert sorted(sent) == sorted(set(sent)) and len(sent) == rows  # each instance stopped once


# -- 10, 12: files that are not reports, and resume files built to crash the reader --------------------------

HOSTILE = {
    "one line that is not a report, no newline": b'{"important": true}',
    "a torn line and nothing else": b'{"line":1,"project_id":"aaaa',
    "a negative line": b'{"line":-1,"project_id":"p","id":"i","outcome":"invalid","attempts":0}\n',
    "line zero": b'{"line":0,"project_id":"p","id":"i","outcome":"invalid","attempts":0}\n',
    "a line number of 10**11": b'{"line":100000000000,"project_id":"p","id":"i","outcome":"invalid"}\n',
    "a line of true": b'{"line":true,"project_id":"p","id":"i","outcome":"skipped","attempts":0}\n',
    "a line of 10**400": b'{"line":1' + b"0" * 400 + b',"outcome":"invalid"}\n',
}


@pytest.mark.parametrize("content", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_resume_file_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    """--resume on a file that is not a whole bulkops report, or one built to crash the reader: one line,
    exit 2, nothing sent, the file byte for byte as it was (run with 1 GiB of address space)."""
    report = tmp_path / "r.jsonl"
    report.write_bytes(content)
    thread = SimThread(config(4, 74))
    with thread as sim:
        write_csv(sim.inventory, tmp_path / "in.csv")
        args = ["stop", str(tmp_path / "in.csv"), "--endpoint", sim.url, "--yes", "--report", str(report)]
        code, err = run_cli([*args, "--resume"], memory=1 << 30)
        assert puts(thread) == []
    refused(code, err, str(report))
    assert report.read_bytes() == content


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "--resume"])
def test_report_name_too_long_is_one_line(tmp_path: Path, resume: bool) -> None:
    """A 300-character report file name is one clear line and exit 2, not an OSError traceback."""
    thread = SimThread(config(4, 75))
    with thread as sim:
        write_csv(sim.inventory, tmp_path / "in.csv")
        report = str(tmp_path / ("r" * 300 + ".jsonl"))
        args = ["stop", str(tmp_path / "in.csv"), "--endpoint", sim.url, "--yes", "--report", report]
        code, err = run_cli([*args, "--resume"] if resume else args)
        assert puts(thread) == []
    refused(code, err, "name too long")


# -- 11: write errors ----------------------------------------------------------------------------------------


class FillingDisk(io.RawIOBase):
    """A report file on a disk that fills after `room` bytes: the write that crosses it is partial, the next
    one fails with ENOSPC (as write(2) does). `truncate` gives the room back, as on a real file system."""

    def __init__(self, path: Path, room: int) -> None:
        self._fh = path.open("ab", buffering=0)
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        view = memoryview(data).cast("B")  # type: ignore[arg-type]
        size = self._fh.seek(0, os.SEEK_END)
        if size >= self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._fh.write(view[: self.room - size]) or 0

    def truncate(self, size: int | None = None) -> int:
        return self._fh.truncate(size)

    def fileno(self) -> int:
        return self._fh.fileno()

    def close(self) -> None:
        self._fh.close()
        super().close()


def test_writer_on_a_full_disk_fails_once_and_leaves_whole_records(tmp_path: Path) -> None:
    """A write that runs out of space is a ReportError, and the file is cut back to its last whole record."""
    path = tmp_path / "r.jsonl"
    writer = ReportWriter(FillingDisk(path, room=700))
    writer.write_many([Result(n, P, ID1, Outcome.ACCEPTED, attempts=1) for n in range(1, 3)])
    with pytest.raises(ReportError, match="No space left on device"):
        writer.write_many([Result(n, P, ID1, Outcome.ACCEPTED, attempts=1) for n in range(3, 9)])
    writer.close()
    assert [json.loads(x)["line"] for x in path.read_bytes().splitlines()] == [1, 2]
    assert path.read_bytes().endswith(b"\n")
    assert load_resume(str(path)).records == 2


def test_disk_full_mid_run_stops_sending_exits_1_and_resume_finishes(tmp_path: Path) -> None:
    """The disk fills mid-run: no new stops, in-flight ones finish, exit 1 with the reason, every record whole
    and counted, and `--resume` then finishes the rest."""
    from bulkops.cli.runner import run_stop

    rows, concurrency = 400, 4
    thread = SimThread(config(rows, 76, latency=0.02))
    report = tmp_path / "r.jsonl"
    summary = io.StringIO()
    with thread as sim:
        csv_path = tmp_path / "in.csv"
        write_csv(sim.inventory, csv_path)
        options = Options(endpoint=sim.url, rate=RateLimit(200.0), concurrency=concurrency)
        writer = ReportWriter(FillingDisk(report, room=30 * 260))
        targets = read_targets(str(csv_path), default_project=None)
        stats = anyio.run(
            lambda: run_stop(targets, options, writer, summary_stream=summary, handle_signals=False)
        )
        sent = puts(thread)
        records = [json.loads(x) for x in report.read_bytes().splitlines()]
        assert stats.exit_code() == 1
        assert stats.write_error is not None and "No space left on device" in stats.write_error
        assert report.read_bytes().endswith(b"\n") and len(records) == stats.rows
        assert 0 < len(records) < len(sent) < rows / 2  # stopped sending soon after the error
        assert len(sent) <= len(records) + stats.unrecorded
        assert "report could not be written" in summary.getvalue()

        args = ["stop", str(csv_path), "--endpoint", sim.url, "--yes", "--report", str(report), "--resume"]
        code, err = run_cli([*args, "--rate", "500"])
        assert code == 0, err.decode(errors="replace")
    done = {json.loads(x)["id"] for x in report.read_bytes().splitlines()}
    assert len(done) == rows


def test_report_to_a_full_device_on_stdout_exits_1_with_one_line(tmp_path: Path) -> None:
    """`--report -` with stdout on /dev/full: one error line, exit 1, no traceback, sending stops early."""
    rows = 200
    thread = SimThread(config(rows, 77, latency=0.02))
    with thread as sim, open("/dev/full", "wb") as full:
        write_csv(sim.inventory, tmp_path / "in.csv")
        args = ["stop", str(tmp_path / "in.csv"), "--endpoint", sim.url, "--yes", "--report", "-"]
        proc = subprocess.run(
            [sys.executable, "-m", "bulkops", *args, "--rate", "100", "--concurrency", "4"],
            stdin=subprocess.DEVNULL,
            stdout=full,
            stderr=subprocess.PIPE,
            env=cli_env(),
            timeout=60,
            check=False,
        )
        sent = puts(thread)
    err = proc.stderr
    assert proc.returncode == 1, err.decode(errors="replace")
    assert b"Traceback" not in err and b"Exception ignored" not in err
    lines = error_lines(err)
    assert len(lines) == 1 and "No space left on device" in lines[0], err.decode(errors="replace")
    assert len(sent) < rows / 4


def test_report_to_a_closed_pipe_exits_1_and_stops_sending(tmp_path: Path) -> None:
    """`bulkops stop --report - | head -1`: once the pipe is closed, sending stops; one line, exit 1."""
    rows = 300
    thread = SimThread(config(rows, 78, latency=0.02))
    with thread as sim:
        write_csv(sim.inventory, tmp_path / "in.csv")
        args = ["stop", str(tmp_path / "in.csv"), "--endpoint", sim.url, "--yes", "--report", "-"]
        proc = spawn([*args, "--rate", "50", "--concurrency", "4"], cli_env())
        try:
            assert proc.stdout is not None and proc.stderr is not None
            first = proc.stdout.readline()
            proc.stdout.close()  # what `head -1` does after its line
            err = proc.stderr.read()
            proc.wait(timeout=30)
        finally:
            kill(proc)
        sent = puts(thread)
    assert json.loads(first)["outcome"] == "accepted"
    assert proc.returncode == 1, err.decode(errors="replace")
    assert b"Traceback" not in err and b"Exception ignored" not in err
    lines = error_lines(err)
    assert len(lines) == 1 and "Broken pipe" in lines[0], err.decode(errors="replace")
    assert len(sent) < rows / 2


def test_resume_after_a_write_error_reads_back_the_report(tmp_path: Path) -> None:
    """A report cut back after a write error is a whole report: --resume reads every record of it."""
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(to_record(Result(1, P, ID1, Outcome.ACCEPTED))) + "\n")
    writer = ReportWriter(FillingDisk(path, room=path.stat().st_size + 10))
    with pytest.raises(ReportError):
        writer.write(Result(2, P, ID1, Outcome.ACCEPTED))
    writer.close()
    state = load_resume(str(path))
    assert state.records == 1 and state.done(P, ID1) and not state.repaired
