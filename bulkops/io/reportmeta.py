"""Which input a report belongs to: a sidecar `REPORT.meta.json` beside it, checked by `--resume`.

    identify(input_path)                 the input's path, size and SHA-256 (None for stdin or a pipe)
    write_meta(report_path, input)       the sidecar, written (atomically) when a run starts a report
    note_run(report_path, started=, ended=)   a finished run (or resumed one) added to the sidecar's `runs`
    check_resume(report_path, input)     ReportError (one line) when the report was made from other input

Why: `--resume` skips rows by (project_id, id) and, for invalid and skipped rows, by line number. Resumed
with another input (a mistyped `--report`, the demo's report), it would append a second run's records to
the first's and mark lines done that belong to another file. The sidecar records what the report was
started from, and a resume from different input is refused:

    {"bulkops_report": 1, "input": "/abs/ids.csv", "size": 81234, "sha256": "…", "started": "…Z"}

Why a sidecar and not a first header record in the report: the report stays what the contract says, one
record per input row, so every reader (`bulkops report`, `--resume`, `jq`, `wc -l`, the Python API's
`ReportWriter` users) keeps working unchanged, and a report written by an older bulkops or by the Python
API is still a report. The cost is a second file to keep next to the report; a report without one is
resumed with a warning (`bulkops.resume.unchecked`), never refused.

For the change ticket (`bulkops report summarize --format markdown`), the sidecar also holds the command
line that started the report (`command`) and, per run that reached its end (the first and each `--resume`),
`{"command", "started", "ended"}` in `runs`. The command line is argv as typed, shell-quoted, with the
password of any URL and secret-looking query values (`password=`, `token=`...) replaced by `***`;
credentials never are on it (they come from the environment).

The fingerprint is the SHA-256 of the whole file, streamed in 1 MiB pieces (constant memory; about 0.1 s
for a million rows), plus its size. Standard input and FIFOs have none (reading them would consume them):
the check is skipped with the same warning. The same content under another path is accepted: a moved file
is the same input.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from bulkops.errors import InputError, ReportError
from bulkops.io.reportfile import shown

log = structlog.get_logger("bulkops.report")

SUFFIX = ".meta.json"
VERSION = 1
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class InputIdentity:
    """An input file as the sidecar records it."""

    path: str
    size: int
    sha256: str

    def short(self) -> str:
        """For an error line: the path and the start of the fingerprint."""
        return f"{shown(self.path)} (sha256 {self.sha256[:12]}, {self.size} bytes)"


def meta_path(report_path: str) -> str:
    """The sidecar of `report_path`."""
    return report_path + SUFFIX


def identify(input_path: str) -> InputIdentity | None:
    """The identity of INPUT, or None for standard input or anything that is not a regular file."""
    if input_path == "-":
        return None
    try:
        with open(input_path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None
            digest = hashlib.file_digest(fh, "sha256")
    except OSError as exc:
        raise InputError(f"cannot read {shown(input_path)}: {(exc.strerror or str(exc)).lower()}") from exc
    return InputIdentity(os.path.abspath(input_path), st.st_size, digest.hexdigest())


_URL_USER = re.compile(r"(?<=://)([^/@\s]*)@")
_SECRET_VALUE = re.compile(r"(?i)((?:password|passwd|pwd|secret|token|sk)=)[^&\s]*")


def _mask(userinfo: re.Match[str]) -> str:
    user, colon, _ = userinfo[1].partition(":")
    return f"{user}:***@" if colon else "***@"


def command_line(argv: Sequence[str] | None = None) -> str:
    """`bulkops ARGS...` as typed (shell-quoted), URL passwords and secret-looking query values masked."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["bulkops", *(_SECRET_VALUE.sub(r"\1***", _URL_USER.sub(_mask, a)) for a in args)])


def write_meta(report_path: str, identity: InputIdentity | None, started: str) -> None:
    """Write the sidecar of a report this run starts (a temporary file renamed into place)."""
    data: dict[str, Any] = {
        "bulkops_report": VERSION,
        "input": identity.path if identity else "-",
        "size": identity.size if identity else None,
        "sha256": identity.sha256 if identity else None,
        "started": started,
        "command": command_line(),
    }
    _write(meta_path(report_path), data)


def note_run(report_path: str, *, started: str, ended: str) -> None:
    """Add a run that reached its end to the sidecar's `runs`; nothing without a readable sidecar (the
    report is what matters: a ticket then shows less, the run is not failed for it)."""
    try:
        data = read_meta(report_path)
        if data is None:
            return
        runs = data.get("runs")
        data["runs"] = [
            *(runs if isinstance(runs, list) else []),
            {"command": command_line(), "started": started, "ended": ended},
        ]
        _write(meta_path(report_path), data)
    except ReportError as exc:
        log.warning("bulkops.report.meta_unwritten", report=report_path, reason=str(exc))


def _write(target: str, data: dict[str, Any]) -> None:
    """`data` as the JSON file `target`, atomically."""
    tmp = f"{target}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ReportError(f"cannot write {shown(target)}: {(exc.strerror or str(exc)).lower()}") from exc


def remove_meta(report_path: str) -> None:
    """Remove the sidecar of a report that was discarded unused."""
    with contextlib.suppress(OSError):
        os.unlink(meta_path(report_path))


def read_meta(report_path: str) -> dict[str, Any] | None:
    """The sidecar of `report_path`, or None when there is none; ReportError when it is unreadable."""
    path = Path(meta_path(report_path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ReportError(f"cannot read {shown(str(path))}: {(exc.strerror or str(exc)).lower()}") from exc
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("bulkops_report") != VERSION:
        raise ReportError(f"{shown(str(path))} is not a bulkops report's metadata; move it away to resume")
    return data


def has_meta(report_path: str) -> bool:
    """True when the report has a sidecar."""
    return os.path.lexists(meta_path(report_path))


def check_resume(report_path: str, identity: InputIdentity | None) -> None:
    """Refuse (ReportError, one line) to resume `report_path` from input other than the one it started from.

    Unchecked, with a warning: a report without a sidecar, or a side (now or then) that is standard input.
    """
    meta = read_meta(report_path)
    if meta is None:
        log.warning("bulkops.resume.unchecked", report=report_path, reason="the report has no input record")
        return
    then = meta.get("sha256")
    if identity is None or not isinstance(then, str):
        log.warning(
            "bulkops.resume.unchecked", report=report_path, reason="standard input has no fingerprint"
        )
        return
    if then != identity.sha256 or meta.get("size") != identity.size:
        was = shown(str(meta.get("input")))
        raise ReportError(
            f"--report {shown(report_path)} was started from {was} (sha256 {then[:12]}), not from "
            f"{identity.short()}: resume with that input, or choose another --report"
        )
