"""The report's file: opened, checked and locked before anything is sent.

    open_report(path, append=...)   a locked, regular report file (or standard output for `-`)

What it refuses, each with one `ReportError` line (exit 2, nothing sent):
  * a path that is not a regular file (a FIFO, a device, a socket): such a report blocks in `open()`,
    cannot be resumed, and cannot be told from a full disk. The file is checked with `stat` before it is
    opened and again with `fstat` after (opened non-blocking, so a FIFO without a reader cannot hang);
  * a report another bulkops run holds: an exclusive `flock` (non-blocking) is taken at once and held for
    the whole run, so two runs on one report cannot both send every row;
  * an existing non-empty report without `--resume` (it may be the checkpoint of an earlier run);
  * anything the OS refuses (missing directory, permissions, a name too long), by its reason.

A report the run creates has its directory fsynced, so that the file itself survives a machine crash; one
that is created and then not used (the user declines, an early signal) is removed again (`discard`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from bulkops.errors import ReportError

log = structlog.get_logger("bulkops.report")

_SHOWN = 120  # characters of a path shown in an error line; longer ones are elided in the middle


def shown(path: str) -> str:
    """`path` for an error line: whole when short, else its start and end around an ellipsis."""
    if len(path) <= _SHOWN:
        return path
    half = (_SHOWN - 3) // 2
    return f"{path[:half]}...{path[-half:]}"


def os_reason(exc: OSError) -> str:
    """The OS's reason for `exc` in a few words (`permission denied`, `file name too long`)."""
    if isinstance(exc, FileNotFoundError):
        return "directory does not exist"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return (exc.strerror or str(exc)).lower()


def not_regular(path: str) -> ReportError:
    """The refusal of a report path that is a FIFO, a device or a socket."""
    return ReportError(
        f"--report {shown(path)} is not a regular file (a FIFO, device or socket); "
        "give a file path, or '-' for standard output"
    )


def already_exists(path: str) -> ReportError:
    """The refusal of an existing, non-empty report without --resume."""
    return ReportError(
        f"--report {shown(path)} already exists; use --resume to continue it, or choose another path"
    )


def check_path(path: str) -> bool:
    """True when `path` exists as a regular file, False when it does not exist; ReportError otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    except NotADirectoryError as exc:
        raise ReportError(f"--report {shown(path)}: a part of the path is not a directory") from exc
    except OSError as exc:
        raise ReportError(f"cannot use --report {shown(path)}: {os_reason(exc)}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ReportError(f"--report {shown(path)} is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(path)
    return True


def _opener(path: str, flags: int) -> int:
    """os.open without blocking (a FIFO without a reader fails at once) and without a controlling tty."""
    return os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, 0o644)


@dataclass
class ReportFile:
    """A report opened for appending: an unbuffered binary file (or stdout), locked while it is open."""

    path: str
    stream: IO[Any]
    created: bool = False
    is_stdout: bool = False

    def discard(self) -> None:
        """Close without a run: a file this open created and nothing wrote to is removed again."""
        if self.is_stdout:
            return
        with contextlib.suppress(OSError):
            empty = os.fstat(self.stream.fileno()).st_size == 0
            self.stream.close()
            if self.created and empty:
                os.unlink(self.path)


def open_report(path: str, *, append: bool) -> ReportFile:
    """Open, check and lock the report at `path` (`-`: standard output); ReportError with one line if not."""
    if path == "-":
        return ReportFile(path, sys.stdout, is_stdout=True)
    check_path(path)
    created = True
    try:
        try:
            stream = open(path, "xb", buffering=0, opener=_opener)  # noqa: SIM115 - owned by the caller
        except FileExistsError:
            created = False
            stream = open(path, "ab", buffering=0, opener=_opener)  # noqa: SIM115
    except IsADirectoryError as exc:
        raise ReportError(f"--report {shown(path)} is a directory") from exc
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO that nobody reads
            raise not_regular(path) from exc
        raise ReportError(f"cannot write --report {shown(path)}: {os_reason(exc)}") from exc
    report = ReportFile(path, stream, created=created)
    try:
        _settle(report, append=append)
    except BaseException:
        report.discard()
        raise
    return report


def _settle(report: ReportFile, *, append: bool) -> None:
    """After the open: a regular file, blocking again, locked, and (without append) empty."""
    fd = report.stream.fileno()
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(report.path)
    os.set_blocking(fd, True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise ReportError(
            f"--report {shown(report.path)} is in use by another bulkops run; "
            "wait for it to end, or choose another --report"
        ) from exc
    except OSError as exc:  # a file system without locks (some NFS mounts): go on, unprotected
        log.warning("bulkops.report.unlocked", path=report.path, reason=os_reason(exc))
    if not append and st.st_size > 0:
        raise already_exists(report.path)
    if report.created:
        sync_directory(report.path)


def sync_directory(path: str) -> None:
    """fsync the directory holding `path`, so that a new file's entry survives a machine crash."""
    try:
        fd = os.open(Path(path).resolve().parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems cannot sync a directory
            os.fsync(fd)
    finally:
        os.close(fd)
