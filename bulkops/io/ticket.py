"""What a change ticket needs from a report: its digest, its fingerprint, how it was run, its failures.

    read_ticket(path, top=, limit=)   a `Ticket`: the `ReportDigest`, the report's size and SHA-256, the
                                      sidecar's command line and run times, the first `limit` failures

`bulkops report summarize --format markdown|json` renders it. Two passes over a report file: the first is
the digest (rows by their last record, as everywhere), the second keeps the last record of the first
`limit` rows that did not succeed, so memory stays bounded however many failed (`bulkops report failed`
lists them all). Standard input can be read once only: its failures are counted by error code but not
listed one by one, and it has no fingerprint.

Times: `started` is the first run's start (the sidecar's `runs`, else its `started`), `ended` the last
run's end; a run killed before its end left none, and the last record's `finished_at` stands in for it
(`ended_from` says which). Nothing here holds a secret: reports and sidecars hold none.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from bulkops.errors import ReportError
from bulkops.io.report_read import ReportDigest, iter_records, summarize
from bulkops.io.reportmeta import read_meta

__all__ = ["Ticket", "read_ticket"]


@dataclass
class Ticket:
    """A report summed up for a change ticket."""

    path: str
    digest: ReportDigest
    size: int | None = None
    sha256: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    unlisted: int = 0

    @property
    def runs(self) -> list[dict[str, Any]]:
        """The runs the sidecar recorded, each {command, started, ended}."""
        runs = self.meta.get("runs")
        return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []

    @property
    def command(self) -> str | None:
        """The command line that started the report, when the sidecar says."""
        first = self.runs[0].get("command") if self.runs else self.meta.get("command")
        return first if isinstance(first, str) else None

    @property
    def started(self) -> str | None:
        """When the first run started (else the first record's finish)."""
        when = self.runs[0].get("started") if self.runs else self.meta.get("started")
        return when if isinstance(when, str) else self.digest.as_dict()["first_finished_at"]

    @property
    def ended_from(self) -> str:
        """`run` when the last run recorded its end, else `last record`."""
        return "run" if self.runs and isinstance(self.runs[-1].get("ended"), str) else "last record"

    @property
    def ended(self) -> str | None:
        """When the last run ended (else the last record's finish)."""
        if self.ended_from == "run":
            return str(self.runs[-1]["ended"])
        last = self.digest.as_dict()["last_finished_at"]
        return last if isinstance(last, str) else None

    def as_dict(self) -> dict[str, Any]:
        """Every figure, JSON-ready: the digest's, and the ticket's own."""
        return {
            "report": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "command": self.command,
            "started": self.started,
            "ended": self.ended,
            "ended_from": self.ended_from,
            "runs": self.runs,
            "input": self.meta.get("input"),
            "input_sha256": self.meta.get("sha256"),
            **self.digest.as_dict(),
            "failures": self.failures,
            "failures_unlisted": self.unlisted,
        }


def _fingerprint(path: str) -> tuple[int, str]:
    try:
        with open(path, "rb") as fh:
            return os.fstat(fh.fileno()).st_size, hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_ticket(path: str, *, top: int = 5, limit: int = 50) -> Ticket:
    """The ticket of the report at `path` (`-`: standard input); ReportError (one line) as `summarize`."""
    digest = summarize(path, top=top)
    if path == "-":
        return Ticket(path, digest, unlisted=digest.rows - digest.succeeded)
    size, sha256 = _fingerprint(path)
    meta = read_meta(path) or {}
    lines = digest.unsuccessful_lines()
    wanted = set(lines[:limit])
    last: dict[int, dict[str, Any]] = {}
    if wanted:
        for rec in iter_records(path):
            if rec["line"] in wanted:
                last[rec["line"]] = rec
    failures = [last[line] for line in sorted(last)]
    return Ticket(path, digest, size, sha256, meta, failures, len(lines) - len(failures))
