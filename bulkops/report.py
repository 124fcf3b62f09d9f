"""The JSON-lines report: the one writer of records, and the resume index read back from it.

Writing. Each record is one JSON object on one line, appended with a single `write` and flushed to the OS
as soon as its batch is written, so a killed process (even SIGKILL) loses at most the records it had not
yet handed to the OS: the rows then in flight. `os.fsync` runs at most once a second (the runner calls it
in a worker thread) and at close, which covers a machine crash up to that second without paying an fsync
per row. A failed write (a full disk, a closed pipe) raises once; a file is cut back to its last whole
record, so it stays a report `--resume` reads. Opening, checking and locking the file is `reportfile`.

Resuming. `load_resume()` reads an existing report and builds
  * the set of (project_id, id) that succeeded (a `SeenIndex`: compact at a million rows), and
  * the set of line numbers that already have a record the tool made itself (invalid, skipped), so that a
    resumed run does not write a second record for them.
A row whose last record is `failed` or `not_found` is sent again: the contract resumes everything that did
not succeed. A success is never undone: once the API took the stop, sending it again is pointless.
A torn last line (a kill in mid-write) is cut off and the file repaired, but only after at least one whole
record; any other unreadable line, a record whose `line` is not 1..MAX_LINE, or a file that is not a
bulkops report, is a `ReportError` (exit 2), never a silent overwrite.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bulkops.errors import ReportError
from bulkops.linebits import LineBits
from bulkops.models import Outcome, Result
from bulkops.reportfile import ReportFile, check_path, open_report, os_reason, shown
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
MAX_LINE = 2**31 - 1  # a record's line: 1-based, at most what `SeenIndex` stores; else not a record
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
    """`bulkops-report-<UTC time to the millisecond>-<pid>.jsonl` in the current directory.

    Unique for back-to-back runs (a second-accurate name collided, and the second run was refused).
    """
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"bulkops-report-{stamp}.{int(now * 1000) % 1000:03d}Z-{os.getpid()}.jsonl"


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
    """Appends records to a stream, one line each: one write and one flush per batch; fsync when due.

    `stream` is a text stream (standard output, a StringIO) or a binary one (the unbuffered report file that
    `open` makes). A write that fails (a full disk, a closed pipe) raises ReportError once, with the reason;
    a file is cut back to its last whole record, so that `--resume` reads it as it stands, and nothing more
    is written. `sync()` (the fsync, at most once per `fsync_interval` by `sync_due()`) is separate from
    the write so that a caller on an event loop can run it in a thread.
    """

    def __init__(
        self, stream: IO[Any], *, owns: bool = False, fsync_interval: float = 1.0, name: str = "the report"
    ) -> None:
        self._stream = stream
        self._owns = owns
        self._text = isinstance(stream, io.TextIOBase)
        self._fsync_interval = fsync_interval
        self._last_sync = time.monotonic()
        self.name = name
        try:
            self._fd: int | None = stream.fileno()
        except (OSError, ValueError, AttributeError):
            self._fd = None
        self._good: int | None = None  # bytes of whole records in a binary file: where a failure cuts back to
        if not self._text and self._fd is not None:
            with contextlib.suppress(OSError):
                self._good = os.fstat(self._fd).st_size
        self.failed: str | None = None
        self.written = 0

    @classmethod
    def open(cls, path: str, *, append: bool) -> ReportWriter:
        """Open, check and lock the report at `path` (`-`: standard output); ReportError with one line if not.

        Without `append`, an existing non-empty report is refused rather than overwritten: it may be the
        checkpoint of an earlier run (use --resume, or another --report). See `bulkops.reportfile`.
        """
        return cls.on(open_report(path, append=append))

    @classmethod
    def on(cls, report: ReportFile) -> ReportWriter:
        """A writer for a report file `open_report` opened (and locked); it closes the file."""
        if report.is_stdout:
            return cls(report.stream, name="to standard output")
        return cls(report.stream, owns=True, name=shown(report.path))

    def write_many(self, results: Iterable[Result]) -> None:
        """Append a batch of records with one write and one flush; ReportError when it cannot."""
        if self.failed is not None:
            raise ReportError(self.failed)
        lines = [record_line(r) + "\n" for r in results]
        if not lines:
            return
        text = "".join(lines)
        try:
            if self._text:
                self._stream.write(text)
                self._stream.flush()
            else:
                data = text.encode("utf-8")
                self._write_all(data)
                if self._good is not None:
                    self._good += len(data)
        except (OSError, ValueError) as exc:
            raise self._fail(exc) from exc
        self.written += len(lines)

    def write(self, result: Result) -> None:
        """Append one record."""
        self.write_many((result,))

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self._stream.write(view)
            if n is None:  # a non-blocking file that is full for now: never the report's own file
                raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
            view = view[n:]

    def _fail(self, exc: BaseException) -> ReportError:
        """Remember the failure, cut a file back to its last whole record; the error to raise."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.failed = f"cannot write the report {self.name}: {reason}"
        if self._good is not None:
            with contextlib.suppress(OSError, ValueError):
                self._stream.truncate(self._good)
        elif self._stream is sys.stdout and self._fd is not None:
            # A closed pipe or a full device: send what the text layer still holds to /dev/null, so that
            # the interpreter's own flush at exit does not fail again ("Exception ignored ... Broken pipe").
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self._fd)
                os.close(devnull)
            self._fd = None
        return ReportError(self.failed)

    def sync_due(self) -> bool:
        """True when the last fsync is `fsync_interval` old (and the stream can be synced at all)."""
        return self._fd is not None and time.monotonic() - self._last_sync >= self._fsync_interval

    def sync(self) -> None:
        """fsync the report (blocking: callers on an event loop run it in a thread)."""
        self._last_sync = time.monotonic()
        if self._fd is None or self.failed is not None:
            return
        try:
            os.fsync(self._fd)
        except OSError:
            self._fd = None  # a pipe or a terminal: nothing to sync

    def close(self) -> None:
        """Flush, fsync and (if it opened the file) close; never raises (a write raised any failure)."""
        if self._text and self.failed is None:
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()
        self.sync()
        if self._owns:
            with contextlib.suppress(OSError, ValueError):
                self._stream.close()


@dataclass
class ResumeState:
    """What an earlier report says is already done."""

    succeeded: SeenIndex = field(default_factory=SeenIndex)
    final_lines: LineBits = field(default_factory=LineBits)
    records: int = 0
    repaired: bool = False

    def line_done(self, line: int) -> bool:
        """True when `line` already has a tool-made final record (invalid, skipped)."""
        return line in self.final_lines

    def mark_line(self, line: int) -> None:
        """Remember that `line` has a tool-made final record."""
        self.final_lines.add(line)

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
        or type(obj.get("line")) is not int
        or not 1 <= obj["line"] <= MAX_LINE
        or not isinstance(obj.get("attempts", 0), int)
        or not isinstance(obj.get("elapsed_ms", 0), int)
    ):
        return None
    return obj


def load_resume(path: str, *, repair: bool = True) -> ResumeState:
    """Read the report at `path` for --resume; a missing or empty file means a fresh start.

    Repairs a torn last line in place, but only after at least one whole record: a file that holds no
    record is not a report, whatever its last line. ReportError when the file is not a bulkops report.
    """
    state = ResumeState()
    if path == "-":
        raise ReportError("--resume needs a report file, not standard output")
    if not check_path(path):
        return state
    p = Path(path)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ReportError(f"cannot read --report {shown(path)} to resume: {os_reason(exc)}") from exc
    good_end = 0
    torn = False
    try:
        with fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    good_end += len(raw)
                    continue
                obj = parse_record(raw)
                complete = raw.endswith(b"\n")
                if obj is None:
                    if state.records == 0:
                        raise ReportError(
                            f"--report {shown(path)} is not a bulkops report (line {number} is not a record)"
                        )
                    if not complete:
                        torn = True
                        break
                    raise ReportError(
                        f"--report {shown(path)} line {number} is not a bulkops record; fix or move it"
                    )
                good_end += len(raw)
                _apply(state, obj)
                if not complete:
                    torn = True  # a whole record without its newline: keep it, add the newline
                    break
    except OSError as exc:
        raise ReportError(f"cannot read --report {shown(path)} to resume: {os_reason(exc)}") from exc
    if torn:
        if repair:  # a dry run reads without writing
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
        raise ReportError(f"cannot repair the torn last line of {shown(str(p))}: {os_reason(exc)}") from exc
