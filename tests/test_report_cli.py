"""`bulkops report summarize` and `bulkops report failed`: what an operator reads after a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bulkops.cli.main import main
from bulkops.io.report import ReportWriter
from bulkops.io.report_read import ReportDigest, retry_rows
from bulkops.io.targets import read_targets
from bulkops.models import DUPLICATE, Outcome, Result, Target

P1 = "a" * 32
P2 = "b" * 32


def iid(n: int) -> str:
    """A valid instance id numbered n."""
    return f"00000000-0000-4000-8000-{n:012x}"


def rec(line: int, outcome: Outcome, project: str = P1, n: int | None = None, **kw: object) -> Result:
    """One result; the instance id is numbered after the line unless `n` says otherwise."""
    return Result(line, project, iid(line if n is None else n), outcome, **kw)  # type: ignore[arg-type]


def write_report(path: Path, results: list[Result]) -> Path:
    """Write results as `bulkops stop` does."""
    writer = ReportWriter.open(str(path), append=path.exists())
    writer.write_many(results)
    writer.close()
    return path


def run(*args: str) -> tuple[int, str, str]:
    """`bulkops report ARGS` in-process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(main, ["report", *args], terminal_width=100)
    return result.exit_code, result.stdout, result.stderr


def sample_report(path: Path) -> Path:
    """Two projects, every kind of outcome, two error codes, known elapsed times and finish times."""
    ts = "2026-11-26T10:00:{:02d}.000Z"
    results = [
        rec(1, Outcome.ACCEPTED, attempts=1, elapsed_ms=100, finished_at=ts.format(0)),
        rec(2, Outcome.ALREADY_STOPPED, attempts=1, elapsed_ms=50, finished_at=ts.format(1),
            error_code="ModelArts.6307", error_msg="already stopped"),
        rec(3, Outcome.FAILED, attempts=5, elapsed_ms=9000, finished_at=ts.format(5),
            error_code="ModelArts.0010", error_msg="internal error"),
        rec(4, Outcome.FAILED, P2, attempts=5, elapsed_ms=8000, finished_at=ts.format(6),
            error_code="ModelArts.0010", error_msg="internal error again"),
        rec(5, Outcome.NOT_FOUND, P2, attempts=1, elapsed_ms=20, finished_at=ts.format(7),
            error_code="ModelArts.6309", error_msg="The instance does not exist."),
        rec(6, Outcome.INVALID, P2, error_code="bulkops.invalid_id", error_msg="bad id",
            finished_at=ts.format(0)),
        rec(7, Outcome.ACCEPTED, P2, attempts=2, elapsed_ms=700, finished_at=ts.format(10)),
    ]  # fmt: skip
    return write_report(path, results)


def test_summarize_shows_projects_errors_slowest_and_rate(tmp_path: Path) -> None:
    """The summary table counts outcomes per project, ranks error codes and slow rows, and gives the rate."""
    code, out, err = run("summarize", str(sample_report(tmp_path / "r.jsonl")))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith(": 7 rows, 2 projects")  # one record per row: no record count
    assert "succeeded 3 (42.9%), did not succeed 4" in out
    header = next(line for line in lines if line.startswith("project"))
    assert header.split() == ["project", "accepted", "already", "not_found", "failed", "invalid", "total"]
    assert f"{P1}" in out and next(line for line in lines if line.startswith(P1)).split()[1:] == [
        "1", "1", "0", "1", "0", "3",
    ]  # fmt: skip
    assert next(line for line in lines if line.startswith("total")).split()[1:] == [
        "2", "1", "1", "2", "1", "7",
    ]  # fmt: skip
    errors = out[out.index("error codes") :]
    assert errors.index("ModelArts.0010") < errors.index("ModelArts.6309")
    assert "2  ModelArts.0010" in errors and "internal error" in errors
    assert "ModelArts.6307" not in out  # already_stopped is a success, not an error
    slow = out[out.index("slowest rows") :].splitlines()
    assert "9.00s" in slow[2] and iid(3) in slow[2] and "8.00s" in slow[3]
    # Six rows were sent, finishing between :00 and :10.
    assert "rate: 0.6 rows/s (6 rows sent, finished over 10.0s), 1.5 requests/s (15 requests)" in out
    assert max(len(line) for line in lines) <= 100


def test_summarize_json_has_every_figure(tmp_path: Path) -> None:
    """--json gives one object a machine can read: outcomes, per project, errors, slowest, rate."""
    code, out, _ = run("summarize", str(sample_report(tmp_path / "r.jsonl")), "--json", "--top", "1")
    assert code == 0
    data = json.loads(out)
    assert data["records"] == 7 and data["rows"] == 7 and data["succeeded"] == 3
    assert data["per_project"][P2] == {"accepted": 1, "failed": 1, "invalid": 1, "not_found": 1}
    assert data["errors"] == [{"error_code": "ModelArts.0010", "count": 2, "sample": "internal error"}]
    assert data["error_codes"] == 3
    assert [r["line"] for r in data["slowest"]] == [3]
    assert data["span_s"] == 10.0 and data["rows_per_s"] == 0.6 and data["requests_per_s"] == 1.5


def test_summarize_memory_is_bounded_by_top_n() -> None:
    """Summarizing keeps only the top-N slowest rows, however many records stream through."""
    summary = ReportDigest(top=3)
    for n in range(1, 5001):
        summary.add(json.loads(json.dumps({
            "line": n, "project_id": P1, "id": iid(n), "outcome": "accepted", "attempts": 1,
            "elapsed_ms": n % 997, "finished_at": "2026-11-26T10:00:00.000Z",
        })))  # fmt: skip
    assert [r["elapsed_ms"] for r in summary.slowest] == [996, 996, 996]
    assert len(summary._slowest) == 3 and summary.records == 5000


def test_summarize_counts_rows_by_their_last_record_after_a_resume(tmp_path: Path) -> None:
    """A resumed report (rows with several records) counts each row once, by its last record: 3 rows from
    6 records, the failure that a resume turned into a success gone from outcomes and error codes."""
    path = write_report(tmp_path / "r.jsonl", [
        rec(1, Outcome.ACCEPTED, attempts=1),
        rec(2, Outcome.FAILED, attempts=5, error_code="bulkops.timeout"),
        rec(3, Outcome.FAILED, P2, attempts=5, error_code="bulkops.timeout"),
    ])  # fmt: skip
    write_report(path, [rec(2, Outcome.FAILED, attempts=5, error_code="bulkops.retry_budget_exhausted")])
    write_report(path, [rec(2, Outcome.ACCEPTED, attempts=1), rec(3, Outcome.NOT_FOUND, P2, attempts=1,
                                                                error_code="ModelArts.6309")])  # fmt: skip
    code, out, _ = run("summarize", str(path))
    assert code == 0
    flat = " ".join(out.split())  # long lines wrap at 100 columns
    assert flat.startswith(f"{path}: 3 rows (6 records), 2 projects succeeded 2 (66.7%), did not succeed 1")
    assert "2 rows with more than one record (a resumed run): each counts once" in flat
    total = next(line for line in out.splitlines() if line.startswith("total")).split()
    assert total[1:] == ["2", "1", "3"]  # accepted, not_found, total
    assert "bulkops.timeout" not in out and "retry_budget" not in out
    data = json.loads(run("summarize", str(path), "--json")[1])
    assert data["rows"] == 3 and data["records"] == 6 and data["unsuccessful"] == 1
    assert data["outcomes"] == {"accepted": 2, "not_found": 1}
    assert data["per_project"] == {P1: {"accepted": 2}, P2: {"not_found": 1}}
    assert [e["error_code"] for e in data["errors"]] == ["ModelArts.6309"]
    assert data["requests"] == 18  # traffic counts every record


def test_failed_lists_rows_whose_last_word_is_not_success(tmp_path: Path) -> None:
    """`report failed` lists failed and circuit-skipped rows, not successes, invalid rows or duplicates."""
    path = write_report(tmp_path / "r.jsonl", [
        rec(1, Outcome.FAILED),                       # failed, then accepted on resume: done
        rec(2, Outcome.FAILED),                       # failed twice: retry
        rec(3, Outcome.NOT_FOUND),                    # not_found: left out by default
        rec(4, Outcome.INVALID, error_code="bulkops.invalid_id"),
        rec(5, Outcome.SKIPPED, P2, error_code="bulkops.circuit_open"),
        rec(6, Outcome.SKIPPED, n=7, error_code=DUPLICATE),   # duplicate of line 7 (which succeeds)
        rec(7, Outcome.ACCEPTED),
        rec(8, Outcome.FAILED),                       # failed, then not_found: last word is not_found
        rec(9, Outcome.ALREADY_STOPPED),
    ])  # fmt: skip
    write_report(path, [rec(1, Outcome.ACCEPTED), rec(2, Outcome.FAILED), rec(8, Outcome.NOT_FOUND)])
    code, out, err = run("failed", str(path))
    assert code == 0, err
    assert out.splitlines() == ["project_id,id", f"{P1},{iid(2)}", f"{P2},{iid(5)}"]
    assert "2 rows to retry; 2 not_found rows left out" in err
    code, out, _ = run("failed", str(path), "--include-not-found")
    assert out.splitlines() == [
        "project_id,id", f"{P1},{iid(2)}", f"{P1},{iid(3)}", f"{P2},{iid(5)}", f"{P1},{iid(8)}",
    ]  # fmt: skip


def test_failed_leaves_out_what_cannot_succeed_and_filters_by_code(tmp_path: Path) -> None:
    """`report failed` leaves out ModelArts.6310 and instances in ERROR by default (and says so); --code
    lists only the named codes (non-retryable ones included); --exclude-code leaves codes out."""
    path = write_report(tmp_path / "r.jsonl", [
        rec(1, Outcome.FAILED, error_code="ModelArts.6310", status="ERROR"),
        rec(2, Outcome.FAILED, status="ERROR", http_status=200),           # --wait saw ERROR
        rec(3, Outcome.FAILED, error_code="bulkops.timeout"),
        rec(4, Outcome.FAILED, error_code="bulkops.retry_budget_exhausted"),
        rec(5, Outcome.SKIPPED, error_code="bulkops.circuit_open"),
    ])  # fmt: skip
    code, out, err = run("failed", str(path))
    assert code == 0
    assert out.splitlines()[1:] == [f"{P1},{iid(3)}", f"{P1},{iid(4)}", f"{P1},{iid(5)}"]
    assert "3 rows to retry; 2 rows that cannot succeed on a retry left out (ModelArts.6310" in err
    code, out, err = run("failed", str(path), "--code", "ModelArts.6310", "--code", "bulkops.timeout")
    assert out.splitlines()[1:] == [f"{P1},{iid(1)}", f"{P1},{iid(3)}"]
    assert "2 rows to retry; 3 rows left out by --code" in err
    code, out, err = run("failed", str(path), "--exclude-code", "bulkops.circuit_open")
    assert out.splitlines()[1:] == [f"{P1},{iid(3)}", f"{P1},{iid(4)}"]
    assert "1 row left out by --exclude-code" in err
    help_text = run("failed", "--help")[1]
    assert "ModelArts.6310" in help_text and "ERROR" in help_text


def test_failed_output_is_input_that_stop_reads(tmp_path: Path) -> None:
    """The CSV written with -o is read back by `bulkops stop`'s reader as exactly those targets."""
    path = sample_report(tmp_path / "r.jsonl")
    out_csv = tmp_path / "retry.csv"
    code, out, err = run("failed", str(path), "-o", str(out_csv))
    assert code == 0 and out == ""
    assert f"2 rows to retry to {out_csv}" in err
    targets = list(read_targets(out_csv, default_project=None))
    assert targets == [Target(2, P1, iid(3)), Target(3, P2, iid(4))]


def test_failed_reads_standard_input(tmp_path: Path) -> None:
    """REPORT may be '-' so the command works in a pipe."""
    path = sample_report(tmp_path / "r.jsonl")
    result = CliRunner().invoke(main, ["report", "failed", "-"], input=path.read_bytes())
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1:] == [f"{P1},{iid(3)}", f"{P2},{iid(4)}"]


@pytest.mark.parametrize("command", ["summarize", "failed"])
def test_torn_last_line_is_one_error_line_exit_2(tmp_path: Path, command: str) -> None:
    """A report cut off in mid-record (a killed run) is refused with one line naming it, exit 2."""
    path = sample_report(tmp_path / "r.jsonl")
    with path.open("a") as fh:
        fh.write('{"line":8,"project_id":"')
    code, out, err = run(command, str(path))
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"bulkops: error: {path} line 8 is torn (the run was killed in mid-write); delete that line, "
        f"or let `bulkops stop --resume --report {path}` repair it"
    ]


@pytest.mark.parametrize("command", ["summarize", "failed"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("project_id,id\nabc,def\n", "is not a bulkops report (line 1 is not a record)"),
        ('{"line": 1, "outcome": "exploded"}\n', "is not a bulkops report (line 1 is not a record)"),
    ],
    ids=["csv", "foreign-json"],
)
def test_non_report_is_one_error_line_exit_2(
    tmp_path: Path, command: str, content: str, message: str
) -> None:
    """A file that is not a report (e.g. the input CSV given by mistake) is one error line and exit 2."""
    path = tmp_path / "x"
    path.write_text(content)
    code, _, err = run(command, str(path))
    assert code == 2
    assert err.splitlines() == [f"bulkops: error: {path} {message}"]


def test_missing_report_is_exit_2(tmp_path: Path) -> None:
    """A report path that does not exist is one error line and exit 2."""
    code, _, err = run("summarize", str(tmp_path / "nope.jsonl"))
    assert code == 2 and err.splitlines() == [f"bulkops: error: {tmp_path / 'nope.jsonl'}: no such file"]


def test_retry_rows_keeps_successes_compact(tmp_path: Path) -> None:
    """Successful keys live in the compact index, so memory for `failed` grows with failures, not rows."""
    results = [rec(n, Outcome.ACCEPTED) for n in range(1, 2001)] + [rec(2001, Outcome.FAILED)]
    path = write_report(tmp_path / "r.jsonl", results)
    assert retry_rows(str(path)).rows == [(P1, iid(2001))]


def test_report_command_is_registered_lazily() -> None:
    """`bulkops --help` lists `report` (and never loads the progress display); `report --help` works."""
    code = (
        "import sys; from click.testing import CliRunner; from bulkops.cli.main import main; "
        "r = CliRunner().invoke(main, ['--help']); "
        "print('report' in r.output, 'bulkops.cli.progress' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]
    result = CliRunner().invoke(main, ["report", "--help"])
    assert result.exit_code == 0 and "summarize" in result.output and "failed" in result.output
