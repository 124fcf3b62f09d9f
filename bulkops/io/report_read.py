"""Reading a report back, streaming: the records, then what `bulkops report` makes of them.

    iter_records(path)      every record, one dict at a time; ReportError on a torn or foreign line
    ReportDigest            what a report file says: outcomes per project, top error codes, slowest rows,
                            achieved rate (not `summary.RunStats`, the live counters of a run)
    retry_rows(path, ...)   the (project_id, id) rows whose last word was not a success

Rows, not records. A resumed report holds several records for a row that was sent again; outcomes, projects
and error codes count rows, each by its last record (a success is never undone, as for `--resume`), so a
1,200-row input is 1,200 rows however often it was resumed. Requests, rows sent, the rate and the slowest
list count every record: they measure traffic.

Memory. `ReportDigest` keeps O(projects + error codes + top-N) values, one bit per input line (to tell a
resumed report, where a line has several records, from a single run), and the last verdict of each line
whose last record did not succeed (what a later record may replace). `retry_rows` keeps the successful
keys in a `SeenIndex` (about 16-19 bytes a key, the structure `--resume` uses) and only the unsuccessful
keys as Python objects, so a million-record report costs some 20 MB, not a dict of a million tuples.

Which rows `failed` lists. The report's rule (docs/contract.md) is that the last record of a
(project_id, id) counts; a success is never undone (`--resume` never sends a succeeded row again), so a
key with any success record is done. Of the rest, the last record decides:
  * `failed`, and `skipped` for a reason other than a duplicate (e.g. `bulkops.circuit_open`): listed;
  * `not_found`: listed only with `include_not_found` (the id is wrong, or the instance is gone);
  * `invalid`: never (the row cannot be sent as it stands), nor `skipped` duplicates (their first line
    carries the verdict);
  * a failure that cannot succeed on a retry (`outcomes.NON_RETRYABLE_CODES`: ModelArts.6310, the
    instance's status does not allow a stop; or an instance last seen in ERROR): only when `codes` names
    its code. `codes` lists only those codes; `exclude_codes` leaves those out.
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

from bulkops.cloud.outcomes import NON_RETRYABLE_CODES, NON_RETRYABLE_STATUSES
from bulkops.errors import ReportError
from bulkops.io.linebits import LineBits
from bulkops.io.resume import parse_record
from bulkops.io.seen import SeenIndex
from bulkops.models import DUPLICATE, Outcome

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
    rows: int = 0
    _slowest: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    _lines: LineBits = field(default_factory=LineBits)
    _repeated: LineBits = field(default_factory=LineBits)
    _open: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # line -> unsuccessful verdict

    def add(self, rec: dict[str, Any]) -> None:
        """Count one record: as a row when its line is new, else in place of the line's earlier verdict."""
        self.records += 1
        outcome: str = rec["outcome"]
        line: int = rec["line"]
        if self._mark_line(line):
            self.rows += 1
            self._count_row(line, rec, outcome)
        elif line in self._open:  # the earlier verdict did not succeed: this record replaces it
            self._uncount_row(*self._open.pop(line))
            self._count_row(line, rec, outcome)
        attempts = rec.get("attempts") or 0
        self.requests += attempts
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

    def _mark_line(self, line: int) -> bool:
        """True the first time `line` is seen; counts the lines seen more than once."""
        if line >= 0 and self._lines.add(line):
            if not self._repeated.add(line):
                self.repeated_lines += 1
            return False
        return True

    def _count_row(self, line: int, rec: dict[str, Any], outcome: str) -> None:
        project = self._project(rec.get("project_id") or "-")
        self.outcomes[outcome] += 1
        self.per_project[project][outcome] += 1
        if outcome in _SUCCESS:
            return
        code = rec.get("error_code") or (f"http {rec['http_status']}" if rec.get("http_status") else "-")
        entry = self.errors.get(code)
        if entry is None:
            entry = self.errors[code] = ErrorCode(sample=str(rec.get("error_msg") or "")[:_SAMPLE_CHARS])
        entry.count += 1
        self._open[line] = (outcome, project, sys.intern(code))

    def _uncount_row(self, outcome: str, project: str, code: str) -> None:
        self.outcomes[outcome] -= 1
        self.per_project[project][outcome] -= 1
        for counter in (self.outcomes, self.per_project[project]):
            if counter[outcome] == 0:
                del counter[outcome]
        entry = self.errors[code]
        entry.count -= 1
        if entry.count == 0:
            del self.errors[code]

    def _project(self, project: str) -> str:
        """The project's key, one string shared by its rows (interned: not one copy per open row)."""
        key = sys.intern(project)
        if key not in self.per_project:
            self.per_project[key] = Counter()
        return key

    def unsuccessful_lines(self) -> list[int]:
        """The input lines whose verdict, so far, is not a success, in order."""
        return sorted(self._open)

    @property
    def succeeded(self) -> int:
        """Rows whose last record is a success."""
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
            "rows": self.rows,
            "records": self.records,
            "succeeded": self.succeeded,
            "unsuccessful": self.rows - self.succeeded,
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
    non_retryable_excluded: int = 0
    code_excluded: int = 0


def non_retryable(code: str | None, status: str | None) -> bool:
    """True for a failure a retry cannot turn into a success (ModelArts.6310, an instance in ERROR)."""
    return code in NON_RETRYABLE_CODES or (status or "").upper() in NON_RETRYABLE_STATUSES


def retry_rows(
    path: str,
    *,
    include_not_found: bool = False,
    codes: frozenset[str] | None = None,
    exclude_codes: frozenset[str] = frozenset(),
) -> RetryRows:
    """The (project_id, id) pairs of the report whose last record did not succeed, in input-line order.

    `codes`: only rows whose last error_code is one of these (non-retryable and not_found ones included);
    `exclude_codes`: not rows whose last error_code is one of these. Without `codes`, failures that
    cannot succeed on a retry (`non_retryable`) are left out, and not_found rows unless
    `include_not_found`.
    """
    size = 0
    if path != "-":
        try:
            size = Path(path).stat().st_size
        except OSError:
            size = 0
    done = SeenIndex(expected=size // 256)
    pending: dict[tuple[str, str], tuple[int, str, str | None, str | None]] = {}
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
        code, status = rec.get("error_code"), rec.get("status")
        pending[key] = (
            rec["line"],
            outcome,
            code if isinstance(code, str) else None,
            status if isinstance(status, str) else None,
        )
    result = RetryRows([], records=records)
    for key, (_line, outcome, code, status) in sorted(pending.items(), key=lambda kv: kv[1][0]):
        if (codes is not None and code not in codes) or code in exclude_codes:
            result.code_excluded += 1
            continue
        if codes is None and non_retryable(code, status):  # named by --code: listed
            result.non_retryable_excluded += 1
            continue
        if codes is None and outcome == Outcome.NOT_FOUND.value and not include_not_found:
            result.not_found_excluded += 1
            continue
        result.rows.append(key)
    return result
