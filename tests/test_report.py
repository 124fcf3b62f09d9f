"""The report: one JSON object per line in the contract's schema, and the resume index read back from it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bulkops.errors import ReportError
from bulkops.io.report import FIELDS, ReportWriter, to_record
from bulkops.io.resume import load_resume
from bulkops.models import Outcome, Result

P = "a" * 32
ID1 = "00000000-0000-4000-8000-000000000001"
ID2 = "00000000-0000-4000-8000-000000000002"


def test_record_has_exactly_the_contract_fields_in_order() -> None:
    """A record carries the contract's twelve fields, in its order, with an RFC 3339 UTC time."""
    rec = to_record(Result(3, P, ID1, Outcome.ACCEPTED, status="STOPPING", http_status=200, attempts=1))
    assert tuple(rec) == FIELDS
    assert rec["finished_at"].endswith("Z") and "T" in rec["finished_at"]
    assert rec["outcome"] == "accepted"


def test_writer_appends_one_line_per_result() -> None:
    """Every result becomes one complete JSON line, written as it arrives."""
    buf = io.StringIO()
    w = ReportWriter(buf)
    w.write(Result(1, P, ID1, Outcome.ACCEPTED))
    w.write_many([Result(2, P, ID2, Outcome.NOT_FOUND, error_code="ModelArts.6309")])
    lines = buf.getvalue().splitlines()
    assert [json.loads(x)["line"] for x in lines] == [1, 2]
    assert w.written == 2


def test_existing_report_is_not_overwritten_without_resume(tmp_path: Path) -> None:
    """An existing non-empty report is refused unless --resume, so a checkpoint is never lost."""
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(to_record(Result(1, P, ID1, Outcome.ACCEPTED))) + "\n")
    with pytest.raises(ReportError, match="already exists"):
        ReportWriter.open(str(path), append=False)
    ReportWriter.open(str(path), append=True).close()


def test_report_in_missing_directory_is_one_clear_error(tmp_path: Path) -> None:
    """A report path in a missing directory is a ReportError naming the problem."""
    with pytest.raises(ReportError, match="directory does not exist"):
        ReportWriter.open(str(tmp_path / "nope" / "r.jsonl"), append=False)


def _write(path: Path, results: list[Result]) -> None:
    with path.open("w") as fh:
        for r in results:
            fh.write(json.dumps(to_record(r)) + "\n")


def test_resume_index_knows_successes_and_tool_verdicts(tmp_path: Path) -> None:
    """Resume skips rows that succeeded and lines already judged invalid or skipped; failures are re-sent."""
    path = tmp_path / "r.jsonl"
    _write(path, [
        Result(1, P, ID1, Outcome.FAILED, http_status=503),
        Result(2, P, ID2, Outcome.ACCEPTED),
        Result(3, P, "bad", Outcome.INVALID, error_code="bulkops.invalid_id"),
        Result(1, P, ID1, Outcome.ALREADY_STOPPED),
    ])  # fmt: skip
    state = load_resume(str(path))
    assert state.done(P, ID1) and state.done(P, ID2)
    assert state.line_done(3) and not state.line_done(1)
    assert state.records == 4 and not state.repaired


def test_torn_last_line_is_cut_and_repaired(tmp_path: Path) -> None:
    """A last line torn by a kill is dropped and the file repaired; the rows before it count."""
    path = tmp_path / "r.jsonl"
    _write(path, [Result(1, P, ID1, Outcome.ACCEPTED)])
    with path.open("a") as fh:
        fh.write('{"line": 2, "project_id": "' + P + '", "outc')
    state = load_resume(str(path))
    assert state.repaired and state.done(P, ID1) and not state.done(P, ID2)
    assert path.read_text().endswith("}\n")
    assert len(path.read_text().splitlines()) == 1


def test_complete_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    """A whole last record missing only its newline is kept and the newline added."""
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(to_record(Result(1, P, ID1, Outcome.ACCEPTED))))
    state = load_resume(str(path))
    assert state.done(P, ID1)
    assert path.read_text().endswith("\n")


def test_resume_on_a_file_that_is_not_a_report_is_refused(tmp_path: Path) -> None:
    """--resume on something that is not a bulkops report is a clear error, and the file is untouched."""
    path = tmp_path / "r.jsonl"
    path.write_text("project_id,id\nfoo,bar\n")
    with pytest.raises(ReportError, match="not a bulkops report"):
        load_resume(str(path))
    assert path.read_text() == "project_id,id\nfoo,bar\n"


def test_corrupt_middle_line_is_refused(tmp_path: Path) -> None:
    """A damaged line in the middle of a report is an error, not silently skipped."""
    path = tmp_path / "r.jsonl"
    good = json.dumps(to_record(Result(1, P, ID1, Outcome.ACCEPTED)))
    path.write_text(good + "\nnot json\n" + good + "\n")
    with pytest.raises(ReportError, match="line 2"):
        load_resume(str(path))


def test_missing_report_means_fresh_start(tmp_path: Path) -> None:
    """--resume with no report yet starts from scratch."""
    state = load_resume(str(tmp_path / "none.jsonl"))
    assert state.records == 0 and not state.done(P, ID1)
