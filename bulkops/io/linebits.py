"""A set of input line numbers, one bit each, in pages allocated only where lines are.

The resume index marks the lines that already have a tool-made record, and `bulkops report summarize` the
lines it has seen. A flat bit array sized by the largest line costs 125 MB for a report that names line
1,000,000,000, even in one record; pages of 4,096 lines (512 bytes) cost memory in proportion to the
records read: a million consecutive lines take 245 pages (about 150 KB), a hostile file whose records
name far-apart lines about 600 bytes a record.
"""

from __future__ import annotations

_PAGE_BITS = 12  # 4,096 lines a page
_PAGE_BYTES = 1 << (_PAGE_BITS - 3)
_IN_PAGE = (1 << _PAGE_BITS) - 1


class LineBits:
    """Line numbers (>= 0) as bits; `add` says whether the line was there already."""

    __slots__ = ("_pages",)

    def __init__(self) -> None:
        self._pages: dict[int, bytearray] = {}

    def add(self, line: int) -> bool:
        """Mark `line`; True when it was marked before."""
        if line < 0:
            raise ValueError(f"line {line} is negative")
        page = self._pages.get(line >> _PAGE_BITS)
        if page is None:
            page = self._pages[line >> _PAGE_BITS] = bytearray(_PAGE_BYTES)
        offset = line & _IN_PAGE
        byte, bit = offset >> 3, 1 << (offset & 7)
        seen = bool(page[byte] & bit)
        page[byte] |= bit
        return seen

    def discard(self, line: int) -> None:
        """Unmark `line` (a no-op when it was not marked)."""
        page = self._pages.get(line >> _PAGE_BITS) if line >= 0 else None
        if page is not None:
            offset = line & _IN_PAGE
            page[offset >> 3] &= ~(1 << (offset & 7)) & 0xFF

    def __contains__(self, line: object) -> bool:
        if not isinstance(line, int) or line < 0:
            return False
        page = self._pages.get(line >> _PAGE_BITS)
        offset = line & _IN_PAGE
        return page is not None and bool(page[offset >> 3] & (1 << (offset & 7)))
