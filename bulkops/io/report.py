"""The JSON-lines report: the one writer of records.

Each record is one JSON object on one line, appended with a single `write` and flushed to the OS as soon as
its batch is written, so a killed process (even SIGKILL) loses at most the records it had not yet handed to
the OS: the rows then in flight. `os.fsync` runs at most once a second (the runner calls it in a worker
thread) and at close, which covers a machine crash up to that second without paying an fsync per row. A
failed write (a full disk, a closed pipe) raises once; a file is cut back to its last whole record, so it
stays a report `--resume` reads (`bulkops.io.resume`). Opening, checking and locking the file is `reportfile`.
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
from typing import IO, Any

from bulkops.errors import ReportError
from bulkops.io.reportfile import ReportFile, open_report, shown
from bulkops.io.resume import utc_now
from bulkops.models import Result

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
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_quote: Callable[[str], str] = json.encoder.encode_basestring  # `_dumps` on a str (ensure_ascii=False)


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
        checkpoint of an earlier run (use --resume, or another --report). See `bulkops.io.reportfile`.
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
