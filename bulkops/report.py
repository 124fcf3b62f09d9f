"""The JSON-lines report: the one writer of records, and the resume index read back from it.

Writing. Each record is one JSON object on one line, appended with a single `write` and flushed to the OS
as soon as its batch is written, so a killed process (even SIGKILL) loses at most the records it had not
yet handed to the OS: the rows then in flight. `os.fsync` runs at most once a second and at close, which
covers a machine crash up to that second without paying an fsync per row.

Resuming. `load_resume()` reads an existing report and builds
  * the set of (project_id, id) that succeeded (a `SeenIndex`: compact at a million rows), and
  * the set of line numbers that already have a record the tool made itself (invalid, skipped), so that a
    resumed run does not write a second record for them.
A row whose last record is `failed` or `not_found` is sent again: the contract resumes everything that did
not succeed. A success is never undone: once the API took the stop, sending it again is pointless.
A torn last line (a kill in mid-write) is cut off and the file repaired; any other unreadable line, or a
file that is not a bulkops report, is a `ReportError` (exit 2), never a silent overwrite.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bulkops.errors import ReportError
from bulkops.models import Outcome, Result
from bulkops.seen import SeenIndex

FIELDS = (
    "line",
    "project_id",
    "id",
    "outcome",
    "status",
    "http_status",
    "error_code",
    "error_msg",
    "request_id",
    "attempts",
    "elapsed_ms",
    "finished_at",
)
_OUTCOMES = frozenset(o.value for o in Outcome)
_TOOL_FINAL = frozenset({Outcome.INVALID.value, Outcome.SKIPPED.value})
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_quote: Callable[[str], str] = json.encoder.encode_basestring  # `_dumps` on a str (ensure_ascii=False)


class _SecondCache:
    """The formatted UTC second of the last call (one tuple, replaced whole)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: tuple[int, str] = (-1, "")


_seconds = _SecondCache()


def utc_now() -> str:
    """The current UTC time in RFC 3339 with milliseconds, e.g. 2026-11-26T17:37:14.123Z.

    The date and time up to the second are formatted once a second; milliseconds are truncated, as
    `datetime.isoformat(timespec="milliseconds")` does.
    """
    now = time.time()
    second = int(now)
    cached, text = _seconds.last
    if second != cached:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _seconds.last = (second, text)
    return f"{text}.{min(999, int((now - second) * 1000)):03d}Z"


def default_report_path() -> str:
    """`bulkops-report-<UTC time>.jsonl` in the current directory."""
    return time.strftime("bulkops-report-%Y%m%dT%H%M%SZ.jsonl", time.gmtime())


def to_record(result: Result) -> dict[str, Any]:
    """The report's JSON object for one result, fields in the contract's order."""
    return {
        "line": result.line,
        "project_id": result.project_id,
        "id": result.id,
        "outcome": result.outcome.value,
        "status": result.status,
        "http_status": result.http_status,
        "error_code": result.error_code,
        "error_msg": result.error_msg,
        "request_id": result.request_id,
        "attempts": result.attempts,
        "elapsed_ms": result.elapsed_ms,
        "finished_at": result.finished_at or utc_now(),
    }


def _s(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def _i(value: int | None) -> str:
    if value is None:
        return "null"
    if type(value) is not int:
        raise TypeError(value)
    return int.__repr__(value)


def record_line(result: Result) -> str:
    """One report line (no newline): byte for byte `_dumps(to_record(result))`, several times faster.

    Each field is written by hand, in the contract's order, with the json module's own string escaping;
    a value of an unexpected type falls back to the json encoder.
    """
    r = result
    try:
        return (
            f'{{"line":{_i(r.line)},"project_id":{_s(r.project_id)},"id":{_s(r.id)},'
            f'"outcome":{_s(r.outcome)},"status":{_s(r.status)},"http_status":{_i(r.http_status)},'
            f'"error_code":{_s(r.error_code)},"error_msg":{_s(r.error_msg)},'
            f'"request_id":{_s(r.request_id)},"attempts":{_i(r.attempts)},"elapsed_ms":{_i(r.elapsed_ms)},'
            f'"finished_at":{_s(r.finished_at or utc_now())}}}'
        )
    except TypeError:
        return _dumps(to_record(result))


class ReportWriter:
    """Appends records to a text stream, one line each, flushing every batch and fsyncing once a second."""

    def __init__(self, stream: IO[str], *, owns: bool = False, fsync_interval: float = 1.0) -> None:
        self._stream = stream
        self._owns = owns
        self._fsync_interval = fsync_interval
        self._last_sync = time.monotonic()
        try:
            self._fd: int | None = stream.fileno()
        except (OSError, ValueError, AttributeError):
            self._fd = None
        self.written = 0

    @classmethod
    def open(cls, path: str, *, append: bool) -> ReportWriter:
        """Open the report at `path` (`-` is standard output); ReportError with one line if impossible.

        Without `append`, an existing non-empty report is refused rather than overwritten: it may be the
        checkpoint of an earlier run (use --resume, or another --report).
        """
        if path == "-":
            return cls(sys.stdout, owns=False)
        p = Path(path)
        if p.is_dir():
            raise ReportError(f"--report {path} is a directory")
        if not append and p.exists() and p.stat().st_size > 0:
            raise ReportError(
                f"--report {path} already exists; use --resume to continue it, or choose another path"
            )
        try:
            stream = open(p, "a", encoding="utf-8", newline="\n")  # noqa: SIM115 - owned by the writer
        except FileNotFoundError as exc:
            raise ReportError(f"cannot write --report {path}: directory does not exist") from exc
        except PermissionError as exc:
            raise ReportError(f"cannot write --report {path}: permission denied") from exc
        except OSError as exc:
            raise ReportError(f"cannot write --report {path}: {exc.strerror or exc}") from exc
        return cls(stream, owns=True)

    def write_many(self, results: Iterable[Result]) -> None:
        """Append a batch of records with one write and one flush."""
        lines = [record_line(r) + "\n" for r in results]
        if not lines:
            return
        text = "".join(lines)
        try:
            self._stream.write(text)
            self._stream.flush()
        except OSError as exc:
            raise ReportError(f"cannot write the report: {exc.strerror or exc}") from exc
        self.written += len(lines)
        now = time.monotonic()
        if self._fd is not None and now - self._last_sync >= self._fsync_interval:
            self._sync()
            self._last_sync = now

    def write(self, result: Result) -> None:
        """Append one record."""
        self.write_many((result,))

    def _sync(self) -> None:
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        except OSError:
            self._fd = None  # a pipe or a terminal: nothing to sync

    def close(self) -> None:
        """Flush, fsync and (if it opened the file) close."""
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()
        self._sync()
        if self._owns:
            self._stream.close()


@dataclass
class ResumeState:
    """What an earlier report says is already done."""

    succeeded: SeenIndex = field(default_factory=SeenIndex)
    final_lines: bytearray = field(default_factory=bytearray)
    records: int = 0
    repaired: bool = False

    def line_done(self, line: int) -> bool:
        """True when `line` already has a tool-made final record (invalid, skipped)."""
        byte = line >> 3
        return byte < len(self.final_lines) and bool(self.final_lines[byte] & (1 << (line & 7)))

    def mark_line(self, line: int) -> None:
        """Remember that `line` has a tool-made final record."""
        byte = line >> 3
        if byte >= len(self.final_lines):
            self.final_lines.extend(bytes(byte + 1 - len(self.final_lines) + 1024))
        self.final_lines[byte] |= 1 << (line & 7)

    def done(self, project_id: str, instance_id: str) -> bool:
        """True when (project_id, id) succeeded in the earlier report."""
        return (project_id, instance_id) in self.succeeded


def parse_record(raw: bytes | str) -> dict[str, Any] | None:
    """One report line as a dict, or None when it is not a bulkops record (the one shape check)."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if (
        not isinstance(obj, dict)
        or obj.get("outcome") not in _OUTCOMES
        or not isinstance(obj.get("line"), int)
        or not isinstance(obj.get("attempts", 0), int)
        or not isinstance(obj.get("elapsed_ms", 0), int)
    ):
        return None
    return obj


def load_resume(path: str) -> ResumeState:
    """Read the report at `path` for --resume; a missing or empty file means a fresh start.

    Repairs a torn last line in place. ReportError when the file is not a bulkops report.
    """
    state = ResumeState()
    p = Path(path)
    if path == "-":
        raise ReportError("--resume needs a report file, not standard output")
    if not p.exists():
        return state
    if p.is_dir():
        raise ReportError(f"--report {path} is a directory")
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ReportError(f"cannot read --report {path} to resume: {exc.strerror or exc}") from exc
    good_end = 0
    torn = False
    with fh:
        for number, raw in enumerate(fh, start=1):
            complete = raw.endswith(b"\n")
            if not raw.strip():
                good_end += len(raw)
                continue
            obj = parse_record(raw)
            if obj is None:
                if not complete:
                    torn = True
                    break
                if state.records == 0:
                    raise ReportError(
                        f"--report {path} is not a bulkops report (line {number} is not a record)"
                    )
                raise ReportError(f"--report {path} line {number} is not a bulkops record; fix or move it")
            if not complete:
                torn = True  # a whole record without its newline: keep it, add the newline
                good_end += len(raw)
                _apply(state, obj)
                break
            good_end += len(raw)
            _apply(state, obj)
    if torn:
        _repair(p, good_end)
        state.repaired = True
    return state


def _apply(state: ResumeState, obj: dict[str, Any]) -> None:
    state.records += 1
    outcome = obj["outcome"]
    pid, iid = obj.get("project_id"), obj.get("id")
    if outcome in _TOOL_FINAL:
        state.mark_line(obj["line"])
    if Outcome(outcome).succeeded and isinstance(pid, str) and isinstance(iid, str):
        state.succeeded.add(pid, iid, obj["line"])


def _repair(p: Path, good_end: int) -> None:
    """Cut the file after its last complete record and make sure it ends with a newline."""
    try:
        with open(p, "r+b") as fh:
            fh.truncate(good_end)
            if good_end:
                fh.seek(good_end - 1)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise ReportError(f"cannot repair the torn last line of {p}: {exc.strerror or exc}") from exc
