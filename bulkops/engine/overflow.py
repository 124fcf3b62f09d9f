"""Per-project overflow on disk: how sorted input reaches N projects x R without holding it in memory.

CSV exports are usually sorted by project. With a read-ahead window in memory alone, a project with more
rows than the window fills it, and the projects further down the file are never seen until it is done:
one project at R requests/s instead of N at R each. So when a project's in-memory queue is full, its next
rows go here instead, to a temporary file, and the reader keeps going to find the other projects. The
engine moves rows back into the scheduler, a chunk at a time, as the project's queue drains.

Layout. Each project keeps a small tail buffer in memory; a full buffer (`chunk_rows`) is written to one
shared, already-unlinked temporary file as one chunk (`line,id` lines), and the project remembers the
chunk's (offset, length). Order within a project is first in, first out: chunks oldest first, then the
tail. Memory is O(projects + tail rows): the tails are capped in total (`max_tail_rows`), beyond which
every tail is flushed as a (short) chunk. Disk grows with the rows spilled (about 45 bytes a row) and is
freed when the run ends; `limit` bounds it (the reader waits once `limit` rows are spilled).

A disk that refuses the spill (full, `ulimit -f`, quota) does not end the run: the rows that could not be
written stay in their tails, in memory, in order; nothing more is written; a `bulkops.overflow.unwritable`
warning says so once; and `full` holds the reader back once the tails reach `max_tail_rows`, so memory
stays bounded and the run goes on at the pace the in-memory rows allow (`test_overflow.py`).
"""

from __future__ import annotations

import errno
import tempfile
from collections import deque
from typing import IO

import structlog

from bulkops.models import Target

log = structlog.get_logger("bulkops.overflow")


class _Spill:
    __slots__ = ("chunks", "count", "tail")

    def __init__(self) -> None:
        self.chunks: deque[tuple[int, int, int]] = deque()  # (offset, length, rows)
        self.tail: list[Target] = []
        self.count = 0


class Overflow:
    """First-in-first-out overflow of targets per project, on disk beyond a small in-memory tail."""

    def __init__(self, *, chunk_rows: int = 512, max_tail_rows: int = 8192, limit: int = 2_000_000) -> None:
        self._chunk_rows = chunk_rows
        self._max_tail = max_tail_rows
        self.limit = limit
        self._file: IO[bytes] | None = None
        self._end = 0
        self._projects: dict[str, _Spill] = {}
        self._tail_rows = 0
        self._count = 0
        self._unwritable = False

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        """True when `limit` rows are spilled, or the disk refused them and the tails are full: wait."""
        return self._count >= self.limit or (self._unwritable and self._tail_rows >= self._max_tail)

    def pending_for(self, project_id: str) -> int:
        """Rows of a project waiting here."""
        spill = self._projects.get(project_id)
        return 0 if spill is None else spill.count

    def projects(self) -> list[str]:
        """Projects with rows waiting here."""
        return list(self._projects)

    def push(self, target: Target) -> None:
        """Add a target behind every earlier one of its project."""
        spill = self._projects.get(target.project_id)
        if spill is None:
            spill = self._projects[target.project_id] = _Spill()
        spill.tail.append(target)
        spill.count += 1
        self._count += 1
        self._tail_rows += 1
        if len(spill.tail) >= self._chunk_rows:
            self._flush(spill)
        if self._tail_rows > self._max_tail:
            for other in self._projects.values():
                if other.tail:
                    self._flush(other)

    def _flush(self, spill: _Spill) -> None:
        if self._unwritable:
            return  # the rows stay in the tail, in memory; `full` holds the reader back
        data = "".join(f"{t.line},{t.id}\n" for t in spill.tail).encode()
        try:
            if self._file is None:
                # Unbuffered: a refused write fails here, not in a later read of a chunk (one write a chunk).
                self._file = tempfile.TemporaryFile(prefix="bulkops-overflow-", buffering=0)  # noqa: SIM115
            self._file.seek(self._end)
            written = self._file.write(data)
            if written != len(data):  # a short write: the disk is full (the next write would say so)
                raise OSError(errno.ENOSPC, "no space left on device")
        except OSError as exc:
            self._unwritable = True
            log.warning(
                "bulkops.overflow.unwritable", error=exc.strerror or str(exc), in_memory=self._tail_rows
            )
            return
        spill.chunks.append((self._end, len(data), len(spill.tail)))
        self._end += len(data)
        self._tail_rows -= len(spill.tail)
        spill.tail = []

    def take(self, project_id: str) -> list[Target]:
        """The oldest waiting rows of a project (one chunk, or the tail when no chunk is left)."""
        spill = self._projects.get(project_id)
        if spill is None:
            return []
        if spill.chunks:
            offset, length, rows = spill.chunks.popleft()
            assert self._file is not None
            self._file.seek(offset)
            text = self._file.read(length).decode()
            out = []
            for row in text.splitlines():
                line, _, instance_id = row.partition(",")
                out.append(Target(int(line), project_id, instance_id))
        else:
            out, spill.tail = spill.tail, []
            self._tail_rows -= len(out)
            rows = len(out)
        spill.count -= rows
        self._count -= rows
        if spill.count == 0:
            del self._projects[project_id]
        return out

    def drain(self, project_id: str) -> list[Target]:
        """Every waiting row of a project, oldest first (used when its circuit opens)."""
        out: list[Target] = []
        while self.pending_for(project_id):
            out.extend(self.take(project_id))
        return out

    def close(self) -> None:
        """Drop the temporary file (it is already unlinked; this frees the space at once)."""
        if self._file is not None:
            self._file.close()
            self._file = None
