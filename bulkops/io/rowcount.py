"""A cheap count of INPUT's data rows, for the progress total and the size of the duplicate index.

    count_rows(source)  ->  rows, or None for standard input or a pipe

It reads 256 KiB chunks with no per-line Python work (about 0.1 s for a million rows) and counts non-blank
physical lines, less one when the first looks like a header (no field a valid instance ID, as
`bulkops.io.targets` decides). Exact for files without quoted multi-line fields; otherwise an upper bound.
"""

from __future__ import annotations

import os
import re
import stat
from typing import BinaryIO, cast

from bulkops.io.csvrows import MAX_LINE_BYTES, Source, open_path
from bulkops.validation import INSTANCE_ID_RE

__all__ = ["count_path", "count_rows"]

_CHUNK = 1 << 18
_BLANK_LINE = re.compile(rb"\n[ \t\r]*(?=\n)")  # the line after this newline is blank
_NON_BLANK = re.compile(rb"[^ \t\r\n]")


def count_rows(source: Source) -> int | None:
    """Count INPUT's data rows cheaply, for a progress total; None for standard input or a pipe.

    Counts non-blank physical lines, less one when the first looks like a header, reading 256 KiB chunks
    with no per-line Python work (about 0.1 s for a million rows). Exact for files without quoted
    multi-line fields; otherwise an upper bound. A seekable stream is counted from its position and put
    back there. Raises `InputError` for a path that cannot be opened.
    """
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        return None if path == "-" else count_path(path)
    buffer = cast(BinaryIO, getattr(source, "buffer", source))
    if not buffer.seekable():
        return None
    start = buffer.tell()
    try:
        return _count(buffer)
    finally:
        buffer.seek(start)


def count_path(path: str) -> int | None:
    """`count_rows` for a path: None for a FIFO or a device (reading it would consume it)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None  # a FIFO or device: reading it would consume it
    except OSError:
        pass  # let the open below say why
    with open_path(path) as file:
        return _count(file)


def _count(file: BinaryIO) -> int:
    head = file.read(MAX_LINE_BYTES + 1)
    count = 0
    pending = False  # the line read so far, not ended yet, has a non-blank byte
    chunk = head
    while chunk:
        first_nl = chunk.find(b"\n")
        if first_nl < 0:
            pending = pending or _NON_BLANK.search(chunk) is not None
        else:
            if pending or _NON_BLANK.search(chunk, 0, first_nl):
                count += 1
            last_nl = chunk.rfind(b"\n")
            ended = chunk.count(b"\n", first_nl + 1, last_nl + 1)
            count += ended - len(_BLANK_LINE.findall(chunk, first_nl, last_nl + 1))
            pending = _NON_BLANK.search(chunk, last_nl + 1) is not None
        chunk = file.read(_CHUNK)
    if pending:
        count += 1
    if count and _looks_like_header(head):
        count -= 1
    return count


def _looks_like_header(head: bytes) -> bool:
    """Whether the first non-blank line (within the first 64 KiB) holds no valid instance ID."""
    head = head.removeprefix(b"\xef\xbb\xbf")
    lines = head.split(b"\n")
    for n, raw in enumerate(lines, 1):
        if _NON_BLANK.search(raw):
            if n == len(lines) and len(head) > MAX_LINE_BYTES:
                return False  # an over-long first line: the reader takes it as an invalid data row
            text = raw.decode(errors="replace")
            return not any(INSTANCE_ID_RE.fullmatch(f.strip(' \t\r"')) for f in text.split(","))
    return False
