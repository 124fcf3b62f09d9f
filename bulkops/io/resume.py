"""Resuming from a report: what an earlier run already did, and the timestamps records carry.

`load_resume()` reads an existing report and builds a `ResumeState`:
  * the set of (project_id, id) that succeeded (a `SeenIndex`: compact at a million rows), and
  * the set of line numbers that already have a record the tool made itself (invalid, skipped), so that a
    resumed run does not write a second record for them.
A row whose last record is `failed` or `not_found` is sent again: the contract resumes everything that did
not succeed. A success is never undone: once the API took the stop, sending it again is pointless.
A torn last line (a kill in mid-write) is cut off and the file repaired, but only after at least one whole
record; any other unreadable line, a record whose `line` is not 1..MAX_LINE, or a file that is not a
bulkops report, is a `ReportError` (exit 2), never a silent overwrite. `parse_record` is the one check of
a record's shape, for this index and for `bulkops.io.report_read`.

`utc_now()` is the `finished_at` of every record (the engine stamps results with it, the writer fills it
in where a result has none); it lives here, below both, so that neither imports the other.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulkops.errors import ReportError
from bulkops.io.linebits import LineBits
from bulkops.io.reportfile import check_path, os_reason, shown
from bulkops.io.seen import SeenIndex
from bulkops.models import Outcome

__all__ = ["MAX_LINE", "ResumeState", "load_resume", "parse_record", "utc_now"]

MAX_LINE = 2**31 - 1  # a record's line: 1-based, at most what `SeenIndex` stores; else not a record
_OUTCOMES = frozenset(o.value for o in Outcome)
_TOOL_FINAL = frozenset({Outcome.INVALID.value, Outcome.SKIPPED.value})


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


@dataclass
class ResumeState:
    """What an earlier report says is already done."""

    succeeded: SeenIndex = field(default_factory=SeenIndex)
    final_lines: LineBits = field(default_factory=LineBits)
    accepted_lines: LineBits = field(default_factory=LineBits)
    records: int = 0
    repaired: bool = False

    def unconfirmed(self, line: int) -> bool:
        """True when `line`'s last record is `accepted`: the stop was taken, its end never seen (--wait
        polls such rows on resume instead of skipping them)."""
        return line in self.accepted_lines

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
    if outcome == Outcome.ACCEPTED:  # the last record of a line wins
        state.accepted_lines.add(obj["line"])
    else:
        state.accepted_lines.discard(obj["line"])


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
