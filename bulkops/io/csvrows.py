"""INPUT's bytes to CSV records: opening a path, standard input or a stream, and reading it line by line.

    open_input(source)  ->  an `Input` (readline, the file to close, a name for messages, the path)
    Lines(readline, name).records()  ->  (line, fields, problem) for each non-blank record, in order

`bulkops.io.targets` turns the records into rows (header, validation, de-duplication); `bulkops.io.rowcount`
counts them cheaply for a progress total. What is decided here:

Opening
    A missing file, a directory or an unreadable file raises `InputError` with one line, as does a first
    line holding NUL bytes (binary, or UTF-16). The string `"-"` names standard input; a file called `-` is
    `./-`. A text stream is read through its `.buffer` when it has one (`sys.stdin`).

Lines and encoding
    INPUT is read as bytes, one physical line at a time, and each line is decoded as UTF-8 on its own: a
    line that is not valid UTF-8 is one record with a problem (`NOT_UTF8`) instead of aborting the run. A
    UTF-8 byte-order mark on line 1 and CRLF line ends are accepted; a bare CR is not a line end. A line
    longer than `MAX_LINE_BYTES` (64 KiB) is one record without fields (`TOO_LONG`) and is skipped without
    being held in memory, so a 10 MB or 10 GB line costs 64 KiB. Blank lines are no records.

CSV
    A line without a double quote is split on commas (what the csv module would do, several times faster).
    A line with one is parsed by the csv module (excel dialect), which may pull further physical lines for a
    quoted field holding newlines; line numbers keep counting physical lines. A quoted field still open after
    `MAX_RECORD_LINES` lines or 64 KiB, or at the end of INPUT, makes its first line a record without fields
    (and a reason) and the lines after it are read again as records of their own, so one stray quote costs
    one row, not the rest of the file. Memory is O(1): one line, or one quoted record of at most 64 KiB.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import BinaryIO, Final, NamedTuple, TextIO, cast

from bulkops.errors import InputError

__all__ = [
    "BLANKS",
    "MAX_LINE_BYTES",
    "MAX_RECORD_LINES",
    "NOT_UTF8",
    "TOO_LONG",
    "Input",
    "Lines",
    "Readline",
    "Record",
    "Source",
    "open_input",
    "open_path",
]

#: A physical line longer than this many bytes (terminator excluded) is an invalid row.
MAX_LINE_BYTES: Final = 64 * 1024
#: A quoted field may span at most this many physical lines (and MAX_LINE_BYTES in all).
MAX_RECORD_LINES: Final = 100

Source = TextIO | BinaryIO | str | os.PathLike[str]
"""What INPUT may be: a path, `"-"` for standard input, or an open text or binary stream."""

Record = tuple[int, list[str] | None, str | None]
"""(1-based physical line where the record starts, its fields or None when unreadable, a problem or None)."""
Readline = Callable[[int], bytes]

#: What is trimmed around fields and header names: spaces and tabs, nothing else.
BLANKS: Final = " \t"
NOT_UTF8: Final = "line is not valid UTF-8"
TOO_LONG: Final = f"line is longer than {MAX_LINE_BYTES} bytes"


class Input(NamedTuple):
    """An opened INPUT."""

    readline: Readline
    file: BinaryIO | None  # the file to close when bulkops opened it, else None
    name: str  # for messages: a quoted path, "standard input", or a stream's name
    path: str | None  # the path of a file opened by name, else None


def open_input(source: Source) -> Input:
    """Open `source` for reading bytes; `InputError` with one line when it cannot be."""
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if path == "-":
            return Input(_own_reader(sys.stdin.buffer), None, "standard input", None)
        file = open_path(path)
        return Input(file.readline, file, repr(path), path)
    name = _stream_name(source)
    stdin_buffer: BinaryIO | None = getattr(sys.stdin, "buffer", None)
    if stdin_buffer is not None and (source is sys.stdin or source is stdin_buffer):
        return Input(_own_reader(stdin_buffer), None, "standard input", None)
    if isinstance(source, io.TextIOBase):
        is_text = True
    elif isinstance(source, io.RawIOBase | io.BufferedIOBase):
        is_text = False
    else:
        try:
            is_text = isinstance(source.read(0), str)
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from exc
    if is_text:
        text = cast(TextIO, source)
        buffer: BinaryIO | None = getattr(text, "buffer", None)
        if buffer is not None:
            return Input(buffer.readline, None, name, None)
        text_readline = text.readline

        def readline(size: int) -> bytes:
            return text_readline(size).encode("utf-8", "surrogatepass")

        return Input(readline, None, name, None)
    if isinstance(source, io.RawIOBase):
        return Input(io.BufferedReader(source).readline, None, name, None)
    return Input(cast(BinaryIO, source).readline, None, name, None)


def _own_reader(stdin: BinaryIO) -> Readline:
    """Standard input's readline through a reader of bulkops' own over the same file descriptor.

    The engine reads rows in a thread that a stop may abandon in the middle of a read (a silent pipe at
    SIGTERM). Were that read holding `sys.stdin.buffer`'s lock, the interpreter's own close of sys.stdin
    at exit would find it taken and abort ("Fatal Python error: _enter_buffered_busy"). Nothing else ever
    closes a reader only bulkops holds. A stdin without a descriptor (a test's) is read as it is.
    """
    try:
        fd = stdin.fileno()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return stdin.readline
    return open(fd, "rb", closefd=False).readline  # never closed: a descriptor it does not own


def open_path(path: str) -> BinaryIO:
    """Open a file for reading bytes, or raise `InputError` with one line saying why it cannot be."""
    try:
        return open(path, "rb")
    except FileNotFoundError as exc:
        raise InputError(f"INPUT {path!r} does not exist") from exc
    except IsADirectoryError as exc:
        raise InputError(f"INPUT {path!r} is a directory, not a CSV file") from exc
    except PermissionError as exc:
        raise InputError(f"INPUT {path!r} is not readable: permission denied") from exc
    except OSError as exc:
        raise InputError(f"INPUT {path!r} cannot be opened: {exc.strerror or exc}") from exc


class _TooLong(Exception):
    """A quoted field ran past MAX_RECORD_LINES lines or MAX_LINE_BYTES bytes."""


class Lines:
    """Physical lines of INPUT, decoded one by one, grouped into CSV records."""

    def __init__(self, readline: Readline, name: str) -> None:
        self._readline = readline
        self._name = name
        self._pushback: deque[tuple[int, bytes | None]] = deque()
        self.line_no = 0

    def records(self) -> Iterator[Record]:
        """Yield (line, fields, problem) for each non-blank record; fields is None for an over-long line.

        The hot loop: an unquoted line is decoded, trimmed of its line end and split on commas right here.
        """
        readline = self._readline
        pushback = self._pushback
        limit = MAX_LINE_BYTES
        size = limit + 1
        line_no = 0
        first = True
        try:
            while True:
                if pushback:
                    num, raw = pushback.popleft()
                else:
                    raw = readline(size)
                    if not raw:
                        return
                    line_no += 1
                    num = line_no
                    if len(raw) > limit and raw[-1] != 0x0A:
                        _skip_rest(readline, size)
                        raw = None
                if raw is None:
                    first = False
                    yield num, None, TOO_LONG
                    continue
                if first:
                    raw = self._check_first(num, raw)
                problem = None
                try:
                    text = raw.decode()
                except UnicodeDecodeError:
                    text = raw.decode(errors="replace")
                    problem = NOT_UTF8
                if '"' in text:
                    self.line_no = line_no
                    fields, problem = self._quoted(text, problem)
                    line_no = self.line_no
                else:
                    body = text.rstrip("\r\n")
                    if not body.strip(BLANKS):
                        continue
                    fields = body.split(",")
                first = False
                yield num, fields, problem
        except OSError as exc:
            raise InputError(f"cannot read {self._name}: {exc.strerror or exc}") from exc

    def _check_first(self, num: int, raw: bytes) -> bytes:
        """Strip a byte-order mark from line 1; refuse a binary or UTF-16 first line."""
        if num == 1:
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise InputError(f"{self._name} is UTF-16 text; save it as UTF-8")
        if b"\x00" in raw:
            raise InputError(f"{self._name} looks binary (NUL bytes in its first line), not a CSV file")
        return raw

    def _next_raw(self) -> tuple[int, bytes | None] | None:
        """The next physical line (None when over-long), for a quoted record; None at the end."""
        if self._pushback:
            return self._pushback.popleft()
        raw: bytes | None = self._readline(MAX_LINE_BYTES + 1)
        if not raw:
            return None
        self.line_no += 1
        if len(raw) > MAX_LINE_BYTES and raw[-1] != 0x0A:
            _skip_rest(self._readline, MAX_LINE_BYTES + 1)
            raw = None
        return self.line_no, raw

    def _quoted(self, text: str, problem: str | None) -> tuple[list[str] | None, str | None]:
        """Parse one record that starts with `text` with the csv module, pulling lines as it asks.

        On a quoted field left open (too long, or at the end of INPUT) or malformed CSV, the record is
        invalid and the lines after its first are put back to be read again as rows of their own.
        """
        taken: list[tuple[int, bytes | None]] = []
        total = len(text)
        at_end = False
        bad_utf8 = problem is not None

        def more() -> Iterator[str]:
            nonlocal total, at_end, bad_utf8
            while True:
                if len(taken) + 1 >= MAX_RECORD_LINES or total > MAX_LINE_BYTES:
                    raise _TooLong
                item = self._next_raw()
                if item is None:
                    at_end = True
                    return
                taken.append(item)
                raw = item[1]
                if raw is None:
                    raise _TooLong
                total += len(raw)
                try:
                    yield raw.decode()
                except UnicodeDecodeError:
                    bad_utf8 = True
                    yield raw.decode(errors="replace")

        reason: str | None
        try:
            fields = next(csv.reader(itertools.chain((text,), more())), None)
            reason = "quoted field not closed before the end of INPUT" if at_end else None
        except _TooLong:
            reason = f"quoted field not closed within {MAX_RECORD_LINES} lines or {MAX_LINE_BYTES} bytes"
        except csv.Error as exc:
            reason = f"malformed CSV: {exc}"
        if reason is not None:
            self._pushback.extendleft(reversed(taken))
            return None, reason
        return fields, NOT_UTF8 if bad_utf8 else None


def _skip_rest(readline: Readline, size: int) -> None:
    """Read past the rest of an over-long line, `size` bytes at a time."""
    while True:
        chunk = readline(size)
        if not chunk or chunk[-1] == 0x0A:
            return


def _stream_name(source: TextIO | BinaryIO) -> str:
    name = getattr(source, "name", None)
    return repr(name) if isinstance(name, str) else "INPUT"
