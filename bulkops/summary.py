"""Counts of a run as it goes, and the summary printed at its end.

`RunStats` is mutated by the engine only (one event loop, no locks): rows by outcome and by project,
requests sent, retries, 429s, interruptions. `render()` gives the human summary that goes to stderr;
`as_dict()` the same figures for machines (logs, `--json`, benchmarks). `exit_code()` maps a finished
run to the contract's exit status.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bulkops.models import ENDPOINT_UNREACHABLE, Outcome, Result
from bulkops.wording import counted

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DECLINED = 3  # the confirmation prompt was answered no: nothing sent
EXIT_INTERRUPTED = 130


@dataclass
class RunStats:
    """Live counters of one run."""

    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    rows: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    per_project: dict[str, Counter[str]] = field(default_factory=dict)
    requests: int = 0
    stops_sent: int = 0
    polls_sent: int = 0
    retries: int = 0
    throttled: int = 0
    resumed_skips: int = 0
    resumed_unsuccessful: int = 0
    circuits_opened: list[str] = field(default_factory=list)
    throttled_out: list[str] = field(default_factory=list)
    unreachable: str | None = None
    """Why the endpoint circuit opened (no request of the run could connect), if it did."""
    learned_rates: dict[str, float] = field(default_factory=dict)
    """Rates learned from 429s (project id, or "*" for the credential's shared quota), requests/s."""
    interrupted: bool = False
    #: True when the consumer counts what it has written (the CLI's runner calls `tally` per record), so that
    #: the summary is exactly the report even when a run is cut short; the engine's `count` is then ignored.
    tallied_by_writer: bool = False
    write_error: str | None = None  # why the report could not be written: the run stopped sending (exit 1)
    unrecorded: int = 0  # results that came after a write error: not in the report, sent again by --resume
    command: str = "stop"  # the operation's name, for the summary's title ("bulkops start: ...")

    def count(self, result: Result) -> None:
        """Count one final record (the engine's call, as each result is emitted)."""
        if not self.tallied_by_writer:
            self.tally(result)

    def tally(self, result: Result) -> None:
        """Count one final record, whoever calls."""
        self.rows += 1
        outcome = result.outcome.value
        self.outcomes[outcome] += 1
        project = result.project_id or "-"
        per = self.per_project.get(project)
        if per is None:
            per = self.per_project[project] = Counter()
        per[outcome] += 1

    @property
    def duration(self) -> float:
        """Seconds from start to finish (or to now while running)."""
        end = self.finished if self.finished is not None else time.monotonic()
        return max(0.0, end - self.started)

    @property
    def succeeded(self) -> int:
        """Rows whose outcome is a success."""
        return sum(n for o, n in self.outcomes.items() if Outcome(o).succeeded)

    @property
    def unsuccessful(self) -> int:
        """Rows that did not succeed (failed, not_found, invalid, skipped)."""
        return self.rows - self.succeeded

    def exit_code(self) -> int:
        """0 when every row succeeded, 1 otherwise (or when the report could not be written), 130 when
        interrupted.

        With --resume, rows the earlier report already judged invalid or skipped still count as not
        succeeded, so a resumed run's exit status speaks for the whole input, not just the rows it sent.
        """
        if self.write_error is not None:
            return EXIT_FAILED
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if self.unsuccessful == 0 and self.resumed_unsuccessful == 0 else EXIT_FAILED

    def as_dict(self) -> dict[str, Any]:
        """The figures as plain JSON-able values."""
        duration = self.duration
        return {
            "rows": self.rows,
            "outcomes": dict(sorted(self.outcomes.items())),
            "per_project": {p: dict(sorted(c.items())) for p, c in sorted(self.per_project.items())},
            "requests": self.requests,
            "stops_sent": self.stops_sent,
            "polls_sent": self.polls_sent,
            "retries": self.retries,
            "throttled": self.throttled,
            "resumed_skips": self.resumed_skips,
            "circuits_opened": list(self.circuits_opened),
            "throttled_out": list(self.throttled_out),
            "endpoint_unreachable": self.unreachable,
            "learned_rates": {p: round(r, 2) for p, r in sorted(self.learned_rates.items())},
            "duration_s": round(duration, 3),
            "requests_per_s": round(self.requests / duration, 1) if duration > 0 else 0.0,
            "interrupted": self.interrupted,
            "write_error": self.write_error,
            "unrecorded": self.unrecorded,
        }

    def render(self, *, max_projects: int = 20) -> str:
        """A few lines for a human: outcomes, per-project counts, traffic, rate, duration."""
        d = self.as_dict()
        title = f"bulkops {self.command}"
        state = " (interrupted: run again with --resume to continue)" if self.interrupted else ""
        if self.write_error is not None:
            state = " (stopped: the report could not be written; run again with --resume once it can be)"
        lines = [f"{title}: {counted(self.rows, 'row')} in {d['duration_s']:.1f}s{state}"]
        outcomes = ", ".join(f"{k} {v}" for k, v in d["outcomes"].items()) or "none"
        lines.append(f"  outcomes: {outcomes}")
        lines.append(
            f"  requests: {self.requests} ({counted(self.retries, 'retry', 'retries')}, "
            f"{self.throttled} throttled), "
            f"{d['requests_per_s']}/s"
        )
        if self.unrecorded:
            lines.append(
                f"  not in the report: {counted(self.unrecorded, 'row')} that finished after the write error"
            )
        if self.resumed_skips:
            done = counted(self.resumed_skips, "row")
            lines.append(f"  resumed: {done} already done in the report, not sent")
        if self.unreachable:
            lines.append(f"  stopped early: {self.unreachable}; the rest skipped ({ENDPOINT_UNREACHABLE})")
        if self.circuits_opened:
            lines.append(f"  circuit opened (auth refused) for: {_some(self.circuits_opened)}")
        if self.throttled_out:
            lines.append(
                f"  given up after --throttle-timeout (429s without a break): {_some(self.throttled_out)}"
            )
        if self.learned_rates:
            learned = [f"{p} {r:.3g}/s" for p, r in sorted(self.learned_rates.items())]
            lines.append(f"  rates learned from 429s: {_some(learned)}")
        projects = sorted(self.per_project.items())
        for project, counts in projects[:max_projects]:
            lines.append(f"  {project}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if len(projects) > max_projects:
            lines.append(f"  ... and {counted(len(projects) - max_projects, 'more project')}")
        return "\n".join(lines)


def _some(items: list[str], shown: int = 5) -> str:
    """The first `shown` items, and how many more."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
