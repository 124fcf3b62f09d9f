"""Reading a report back, streaming: the records, then what `bulkops report` makes of them.

    iter_records(path)      every record, one dict at a time; ReportError on a torn or foreign line
    ReportDigest            what a report file says: outcomes per project, top error codes, slowest rows,
                            achieved rate (not `summary.RunStats`, the live counters of a run)
    retry_rows(path, ...)   the (project_id, id) rows whose last word was not a success

Memory. `ReportDigest` keeps O(projects + error codes + top-N) values plus one bit per input line (to tell a
resumed report, where a line has several records, from a single run). `retry_rows` keeps the successful
keys in a `SeenIndex` (about 16-19 bytes a key, the structure `--resume` uses) and only the unsuccessful
keys as Python objects, so a million-record report costs some 20 MB, not a dict of a million tuples.

Which rows `failed` lists. The report's rule (docs/contract.md) is that the last record of a
(project_id, id) counts; a success is never undone (`--resume` never sends a succeeded row again), so a
key with any success record is done. Of the rest, the last record decides:
  * `failed`, and `skipped` for a reason other than a duplicate (e.g. `bulkops.circuit_open`): listed;
  * `not_found`: listed only with `include_not_found` (the id is wrong, or the instance is gone);
  * `invalid`: never (the row cannot be sent as it stands), nor `skipped` duplicates (their first line
    carries the verdict).
"""

from __future__ import annotations

import datetime as dt
import heapq
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulkops.errors import ReportError
from bulkops.linebits import LineBits
from bulkops.models import DUPLICATE, Outcome
from bulkops.resume import parse_record
from bulkops.seen import SeenIndex

_SUCCESS = frozenset(o.value for o in Outcome if o.succeeded)
_SAMPLE_CHARS = 200


def _describe(path: str) -> str:
    return "standard input" if path == "-" else path


def iter_records(path: str) -> Iterator[dict[str, Any]]:
    """Each record of the report at `path` (`-`: standard input), in file order.

    ReportError (one line) when the file cannot be read, is not a bulkops report, holds a line that is not
    a record, or ends in a torn line (a run killed in mid-write).
    """
    name = _describe(path)
    try:
        fh = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed below
    except IsADirectoryError as exc:
        raise ReportError(f"{name} is a directory, not a report") from exc
    except FileNotFoundError as exc:
        raise ReportError(f"{name}: no such file") from exc
    except OSError as exc:
        raise ReportError(f"cannot read {name}: {exc.strerror or exc}") from exc
    records = 0
    try:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            obj = parse_record(raw)
            if obj is None or not raw.endswith(b"\n"):
                if not raw.endswith(b"\n") and records > 0:
                    raise ReportError(
                        f"{name} line {number} is torn (the run was killed in mid-write); "
                        f"delete that line, or let `bulkops stop --resume --report {path}` repair it"
                    )
                if records == 0:
                    raise ReportError(f"{name} is not a bulkops report (line {number} is not a record)")
                raise ReportError(f"{name} line {number} is not a bulkops record")
            records += 1
            yield obj
    except OSError as exc:
        raise ReportError(f"cannot read {name}: {exc.strerror or exc}") from exc
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def _parse_time(text: object) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


@dataclass
class ErrorCode:
    """One error code: how many unsuccessful records carry it, and the first message seen with it."""

    count: int = 0
    sample: str = ""


@dataclass
class ReportDigest:
    """What a report file says, gathered in one pass over its records (`bulkops report summarize`)."""

    top: int = 5
    records: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    per_project: dict[str, Counter[str]] = field(default_factory=dict)
    errors: dict[str, ErrorCode] = field(default_factory=dict)
    requests: int = 0
    sent_records: int = 0
    first_at: dt.datetime | None = None
    last_at: dt.datetime | None = None
    repeated_lines: int = 0
    _slowest: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    _lines: LineBits = field(default_factory=LineBits)

    def add(self, rec: dict[str, Any]) -> None:
        """Count one record."""
        self.records += 1
        outcome: str = rec["outcome"]
        self.outcomes[outcome] += 1
        project = rec.get("project_id") or "-"
        per = self.per_project.get(project)
        if per is None:
            per = self.per_project[project] = Counter()
        per[outcome] += 1
        self._mark_line(rec["line"])
        attempts = rec.get("attempts") or 0
        self.requests += attempts
        if outcome not in _SUCCESS:
            code = rec.get("error_code") or (f"http {rec['http_status']}" if rec.get("http_status") else "-")
            entry = self.errors.get(code)
            if entry is None:
                entry = self.errors[code] = ErrorCode(sample=str(rec.get("error_msg") or "")[:_SAMPLE_CHARS])
            entry.count += 1
        if attempts > 0:
            self.sent_records += 1
            when = _parse_time(rec.get("finished_at"))
            if when is not None:
                if self.first_at is None or when < self.first_at:
                    self.first_at = when
                if self.last_at is None or when > self.last_at:
                    self.last_at = when
            item = (int(rec.get("elapsed_ms") or 0), self.records, rec)
            if len(self._slowest) < self.top:
                heapq.heappush(self._slowest, item)
            elif self.top > 0 and item[0] > self._slowest[0][0]:
                heapq.heapreplace(self._slowest, item)

    def _mark_line(self, line: int) -> None:
        if line >= 0 and self._lines.add(line):
            self.repeated_lines += 1

    @property
    def succeeded(self) -> int:
        """Records with a success outcome."""
        return sum(n for o, n in self.outcomes.items() if o in _SUCCESS)

    @property
    def span_s(self) -> float:
        """Seconds from the first to the last `finished_at` of a row that was sent."""
        if self.first_at is None or self.last_at is None:
            return 0.0
        return (self.last_at - self.first_at).total_seconds()

    @property
    def slowest(self) -> list[dict[str, Any]]:
        """The `top` records with the longest `elapsed_ms`, slowest first."""
        return [rec for _, _, rec in sorted(self._slowest, key=lambda t: (-t[0], t[1]))]

    def top_errors(self) -> list[tuple[str, ErrorCode]]:
        """Error codes by count, most frequent first (the first `top` of them)."""
        ranked = sorted(self.errors.items(), key=lambda kv: (-kv[1].count, kv[0]))
        return ranked[: self.top]

    def as_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-able values (`bulkops report summarize --json`)."""
        span = self.span_s
        return {
            "records": self.records,
            "succeeded": self.succeeded,
            "unsuccessful": self.records - self.succeeded,
            "repeated_lines": self.repeated_lines,
            "outcomes": dict(sorted(self.outcomes.items())),
            "per_project": {p: dict(sorted(c.items())) for p, c in sorted(self.per_project.items())},
            "errors": [
                {"error_code": code, "count": e.count, "sample": e.sample} for code, e in self.top_errors()
            ],
            "error_codes": len(self.errors),
            "slowest": self.slowest,
            "sent_records": self.sent_records,
            "requests": self.requests,
            "first_finished_at": _iso(self.first_at),
            "last_finished_at": _iso(self.last_at),
            "span_s": round(span, 3),
            "rows_per_s": round(self.sent_records / span, 2) if span > 0 else None,
            "requests_per_s": round(self.requests / span, 2) if span > 0 else None,
        }


def _iso(when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def summarize(path: str, *, top: int = 5) -> ReportDigest:
    """Read the whole report at `path` into a `ReportDigest`."""
    summary = ReportDigest(top=top)
    for rec in iter_records(path):
        summary.add(rec)
    return summary


@dataclass
class RetryRows:
    """The rows to send again, and what was left out."""

    rows: list[tuple[str, str]]
    not_found_excluded: int = 0
    records: int = 0


def retry_rows(path: str, *, include_not_found: bool = False) -> RetryRows:
    """The (project_id, id) pairs of the report whose last record did not succeed, in input-line order."""
    size = 0
    if path != "-":
        try:
            size = Path(path).stat().st_size
        except OSError:
            size = 0
    done = SeenIndex(expected=size // 256)
    pending: dict[tuple[str, str], tuple[int, str]] = {}
    records = 0
    for rec in iter_records(path):
        records += 1
        pid, iid = rec.get("project_id"), rec.get("id")
        if not isinstance(pid, str) or not isinstance(iid, str):
            continue
        outcome = rec["outcome"]
        key = (pid, iid)
        if outcome in _SUCCESS:
            done.add(pid, iid, rec["line"])
            pending.pop(key, None)
            continue
        if outcome == Outcome.INVALID.value or (
            outcome == Outcome.SKIPPED.value and rec.get("error_code") == DUPLICATE
        ):
            continue
        if key in done:
            continue
        pending[key] = (rec["line"], outcome)
    rows: list[tuple[str, str]] = []
    excluded = 0
    for key, (_line, outcome) in sorted(pending.items(), key=lambda kv: kv[1][0]):
        if outcome == Outcome.NOT_FOUND.value and not include_not_found:
            excluded += 1
            continue
        rows.append(key)
    return RetryRows(rows, excluded, records)
