"""Where a run command's rows come from: INPUT (a CSV file, or `-`), or `--from-report REPORT`.

Everything that reads the rows (the run, the dry run's plan, the confirmation's count, the progress total)
asks a `RunInput`, so `--from-report` is one branch here and none in the command. The report of
`--from-report` is also what `--resume` fingerprints (`reportmeta.identify`), as INPUT is otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bulkops.io.fromreport import acted_rows
from bulkops.io.rowcount import count_rows
from bulkops.io.targets import read_targets
from bulkops.models import Result, Target


@dataclass
class RunInput:
    """The rows of one run: `path` is INPUT, or the REPORT of `--from-report` (`from_report` True)."""

    path: str
    from_report: bool = False
    default_project: str | None = None
    _acted: list[Target] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, kw: dict[str, Any]) -> RunInput:
        """From the command's flags (`input_path`, `from_report`, `project_id`)."""
        report = kw.get("from_report")
        if report is not None:
            return cls(str(report), from_report=True)
        return cls(str(kw["input_path"]), default_project=kw.get("project_id") or None)

    @property
    def shown(self) -> str:
        """How the question and messages name it."""
        if self.from_report:
            return f"the report {self.path}"
        return "standard input" if self.path == "-" else self.path

    def rows(self) -> Iterator[Target | Result]:
        """Every row, validated (INPUT) or taken from the report (`--from-report`)."""
        if self.from_report:
            return iter(self._taken())
        source: Any = sys.stdin.buffer if self.path == "-" else self.path
        return read_targets(source, default_project=self.default_project)

    def total(self) -> int | None:
        """How many rows there are, or None when that cannot be known ahead (standard input)."""
        if self.from_report:
            return len(self._taken())
        return count_rows(self.path) if self.path != "-" else None

    def _taken(self) -> list[Target]:
        if self._acted is None:
            self._acted = acted_rows(self.path)
        return self._acted
