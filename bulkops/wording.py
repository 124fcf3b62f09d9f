"""Counts in the words a person reads: `1 project`, `2 projects`, `1 row`, `0 rows`.

Every count that bulkops prints next to a noun goes through `counted`, so that no message says
"1 projects". Nouns whose plural is not a plain `s` pass it explicitly.
"""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and `noun`, singular for exactly one, else `plural` (default `noun + "s"`)."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
