"""What `bulkops list` writes: one row per server, as CSV (what `bulkops stop` reads), JSON lines or a table.

    COLUMNS             project_id, id, name, status, flavor: the header of the CSV, the keys of a JSON line
    server_row(p, s)    one server of the API (a dict) as those five strings
    ListWriter          `write(row)` as rows arrive, `close()` at the end; the table is written at close

CSV is `bulkops stop`'s input (`io.targets` reads `project_id` and `id`, and ignores the other three
without a warning), so `bulkops list ... > tonight.csv && bulkops stop tonight.csv` works. The table is for
eyes: its widths need every row, so it is the one format held in memory; control characters a server may
put in a name are shown as `?` there (the CSV and JSON keep the text as it came, quoted or escaped).
"""

from __future__ import annotations

import csv
import json
from typing import Any, TextIO

__all__ = ["COLUMNS", "FORMATS", "ListWriter", "server_row"]

COLUMNS = ("project_id", "id", "name", "status", "flavor")
FORMATS = ("csv", "jsonl", "table")


def server_row(project_id: str, server: dict[str, Any]) -> tuple[str, ...]:
    """The five columns of one server (a missing or non-text field is empty)."""
    values = (server.get(k) for k in COLUMNS[1:])
    return (project_id, *(v if isinstance(v, str) else "" for v in values))


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


class ListWriter:
    """Writes rows to `stream` in one of `FORMATS`."""

    def __init__(self, stream: TextIO, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self._stream = stream
        self._fmt = fmt
        self._rows: list[tuple[str, ...]] = []
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(COLUMNS)

    def write(self, row: tuple[str, ...]) -> None:
        """One server's row."""
        if self._csv is not None:
            self._csv.writerow(row)
        elif self._fmt == "jsonl":
            self._stream.write(json.dumps(dict(zip(COLUMNS, row, strict=True)), ensure_ascii=False) + "\n")
        else:
            self._rows.append(tuple(_printable(v) for v in row))

    def close(self) -> None:
        """Finish the output (the whole table, for `table`) and flush it."""
        if self._fmt == "table":
            rows = [COLUMNS, *self._rows]
            widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
            for r in rows:
                line = "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True))
                self._stream.write(line.rstrip() + "\n")
        self._stream.flush()
