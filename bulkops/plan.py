"""The dry run: read and validate everything, send nothing, and say what a real run would do.

The implied duration is what the rate limits alone allow: each project needs (rows - burst) / rate
seconds after its first burst, the slowest project sets the pace, and `--global-rate` can only make it
longer. Latency and concurrency can stretch it further (a run can never beat concurrency / latency
requests per second); the plan says so rather than guess a latency it has not seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from bulkops.models import Outcome, Result, Target
from bulkops.options import Options

_MAX_REASONS = 10


@dataclass
class Plan:
    """What a dry run found."""

    per_project: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    skipped: int = 0
    reasons: list[Result] = field(default_factory=list)

    @property
    def targets(self) -> int:
        """Rows that a real run would send."""
        return sum(self.per_project.values())

    def add(self, item: Target | Result) -> None:
        """Count one row from the reader."""
        if isinstance(item, Target):
            self.per_project[item.project_id] += 1
            return
        if item.outcome is Outcome.INVALID:
            self.invalid += 1
        else:
            self.skipped += 1
        if len(self.reasons) < _MAX_REASONS:
            self.reasons.append(item)

    def duration(self, options: Options) -> float:
        """Seconds the rate limits imply for sending every target once."""
        slowest = 0.0
        for project, rows in self.per_project.items():
            limit = options.rate_for(project)
            slowest = max(slowest, max(0.0, rows - limit.capacity) / limit.rate)
        if options.global_rate is not None:
            total = self.targets
            g = options.global_rate
            slowest = max(slowest, max(0.0, total - g.capacity) / g.rate)
        return slowest

    def render(self, options: Options, *, max_projects: int = 20) -> str:
        """The plan for a human."""
        lines = [
            f"bulkops dry run: {self.targets} rows to stop in {len(self.per_project)} projects, "
            f"{self.invalid} invalid, {self.skipped} skipped (duplicates); nothing was sent"
        ]
        for project, rows in sorted(self.per_project.items())[:max_projects]:
            limit = options.rate_for(project)
            lines.append(f"  {project}: {rows} rows at {limit.rate:g}/s (burst {limit.capacity:g})")
        if len(self.per_project) > max_projects:
            lines.append(f"  ... and {len(self.per_project) - max_projects} more projects")
        for r in self.reasons:
            lines.append(f"  line {r.line}: {r.outcome.value}: {r.error_msg}")
        extra = self.invalid + self.skipped - len(self.reasons)
        if extra > 0:
            lines.append(f"  ... and {extra} more invalid or skipped rows")
        secs = self.duration(options)
        lines.append(
            f"  implied duration: at least {_human(secs)} at the configured rates "
            f"(and at most {options.concurrency} requests in flight; latency adds to this)"
        )
        return "\n".join(lines)


def make_plan(items: Iterable[Target | Result]) -> Plan:
    """Read every row and count it."""
    plan = Plan()
    for item in items:
        plan.add(item)
    return plan


def _human(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
