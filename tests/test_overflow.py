"""The on-disk overflow that lets sorted input reach every project: FIFO per project, small in memory."""

from __future__ import annotations

import errno
import tempfile

import pytest

from bulkops.engine.overflow import Overflow
from bulkops.models import Target


def iid(n: int) -> str:
    """A valid instance id numbered n."""
    return f"00000000-0000-4000-8000-{n:012x}"


def test_fifo_per_project_across_chunks_and_tail() -> None:
    """Rows come back per project in the order they went in, whether from disk chunks or the tail."""
    ov = Overflow(chunk_rows=4, max_tail_rows=100)
    for n in range(10):
        ov.push(Target(n + 1, "pa", iid(n)))
        ov.push(Target(100 + n, "pb", iid(100 + n)))
    assert len(ov) == 20 and ov.pending_for("pa") == 10
    got: list[Target] = []
    while ov.pending_for("pa"):
        got.extend(ov.take("pa"))
    assert [t.line for t in got] == list(range(1, 11))
    assert all(t.project_id == "pa" and t.id == iid(t.line - 1) for t in got)
    assert [t.line for t in ov.drain("pb")] == list(range(100, 110))
    assert len(ov) == 0 and ov.projects() == []
    ov.close()


def test_tails_are_capped_in_memory() -> None:
    """Many projects with a few rows each are flushed to disk once the in-memory tails pass their cap."""
    ov = Overflow(chunk_rows=512, max_tail_rows=50)
    for n in range(200):
        ov.push(Target(n + 1, f"p{n % 40}", iid(n)))
    assert ov._tail_rows <= 50
    total = sum(len(ov.drain(f"p{k}")) for k in range(40))
    assert total == 200
    ov.close()


def test_limit_says_when_the_reader_must_wait() -> None:
    """Once `limit` rows are spilled the overflow reports full, and taking rows frees it again."""
    ov = Overflow(chunk_rows=2, limit=3)
    for n in range(3):
        ov.push(Target(n + 1, "p", iid(n)))
    assert ov.full
    ov.take("p")
    assert not ov.full
    ov.close()


def test_a_disk_that_refuses_the_spill_keeps_rows_in_memory_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk (or `ulimit -f`) under the spill file loses no row and raises nothing: the rows stay in
    memory in order, and `full` holds the reader back once the in-memory tails are full."""

    class Refusing:
        def seek(self, offset: int) -> int:
            return offset

        def write(self, data: bytes) -> int:
            raise OSError(errno.EFBIG, "File too large")

        def close(self) -> None:
            pass

    monkeypatch.setattr(tempfile, "TemporaryFile", lambda **_kw: Refusing())
    overflow = Overflow(chunk_rows=4, max_tail_rows=10)
    for n in range(1, 10):
        overflow.push(Target(n, "p", iid(n)))
    assert not overflow.full
    overflow.push(Target(10, "p", iid(10)))
    assert overflow.full  # the reader waits instead of growing memory without bound
    out = []
    while overflow.pending_for("p"):
        out.extend(overflow.take("p"))
    assert [t.line for t in out] == list(range(1, 11))
    assert not overflow.full
