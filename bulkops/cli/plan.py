"""The dry run: read and validate everything, send nothing, and say what a real run would do.

The implied duration is what the rate limits alone allow: each project needs (rows - burst) / rate
seconds after its first burst, the slowest project sets the pace, and `--global-rate` can only make it
longer. Latency and concurrency can stretch it further (a run can never beat concurrency / latency
requests per second); the plan says so rather than guess a latency it has not seen.

The dry run is also the pre-flight check: the command runs every check the real run does (endpoint,
credentials, report, input header, the input a `--resume`d report started from) before it makes the plan,
and the plan names the endpoint, the kind of credential (never its value) and the report. With `--resume`,
rows the report already holds (succeeded, or judged invalid/skipped) are counted as done, not as to stop.
The plan names the operation (`options.operation`): "12 rows to start in 2 projects".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from bulkops.models import Outcome, Result, Target
from bulkops.options import Options
from bulkops.wording import counted

_MAX_REASONS = 10


class Done(Protocol):
    """What an earlier report says is done (`ResumeState`)."""

    def done(self, project_id: str, instance_id: str) -> bool: ...  # pragma: no cover

    def line_done(self, line: int) -> bool: ...  # pragma: no cover


@dataclass(frozen=True)
class Setting:
    """Where the run would go, for the plan's head: endpoint, credential kind, report path."""

    endpoint: str
    credentials: str
    report: str
    shared: str | None = None
    """The Redis the limits are shared through (its URL without a password), if any."""


@dataclass
class Plan:
    """What a dry run found."""

    per_project: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    skipped: int = 0
    resumed: int = 0
    reasons: list[Result] = field(default_factory=list)
    resume: Done | None = None

    @property
    def targets(self) -> int:
        """Rows that a real run would send."""
        return sum(self.per_project.values())

    def add(self, item: Target | Result) -> None:
        """Count one row from the reader (a row an earlier report holds as done is counted as resumed)."""
        resume = self.resume
        if isinstance(item, Target):
            if resume is not None and resume.done(item.project_id, item.id):
                self.resumed += 1
                return
            self.per_project[item.project_id] += 1
            return
        if resume is not None and resume.line_done(item.line):
            self.resumed += 1
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

    def render(self, options: Options, *, setting: Setting | None = None, max_projects: int = 20) -> str:
        """The plan for a human."""
        resumed = f", {counted(self.resumed, 'row')} already done in the report" if self.resume else ""
        lines = [
            f"bulkops dry run: {counted(self.targets, 'row')} to {options.operation.name} in "
            f"{counted(len(self.per_project), 'project')}, {self.invalid} invalid, "
            f"{self.skipped} skipped (duplicates){resumed}; nothing was sent"
        ]
        if setting is not None:
            lines.append(f"  endpoint: {setting.endpoint}")
            lines.append(f"  credentials: {setting.credentials}")
            lines.append(f"  report: {setting.report}")
            if setting.shared is not None:
                lines.append(f"  limits shared through: {setting.shared} (reachable)")
        for project, rows in sorted(self.per_project.items())[:max_projects]:
            limit = options.rate_for(project)
            lines.append(
                f"  {project}: {counted(rows, 'row')} at {limit.rate:g}/s (burst {limit.capacity:g})"
            )
        if len(self.per_project) > max_projects:
            lines.append(f"  ... and {counted(len(self.per_project) - max_projects, 'more project')}")
        for r in self.reasons:
            lines.append(f"  line {r.line}: {r.outcome.value}: {r.error_msg}")
        extra = self.invalid + self.skipped - len(self.reasons)
        if extra > 0:
            lines.append(f"  ... and {counted(extra, 'more invalid or skipped row')}")
        secs = self.duration(options)
        lines.append(
            f"  implied duration: at least {_human(secs)} at the configured rates "
            f"(and at most {options.concurrency} requests in flight; latency adds to this)"
        )
        return "\n".join(lines)


def make_plan(items: Iterable[Target | Result], *, resume: Done | None = None) -> Plan:
    """Read every row and count it; with `resume`, rows it holds as done are counted apart."""
    plan = Plan(resume=resume)
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
