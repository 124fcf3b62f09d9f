"""What the simulator saw: counters per project, and a bounded log of requests for tests to read.

Counters are plain ints in slotted objects (a few attribute increments per request). The request log is a
`collections.deque` with a maximum length, appended to only when `record_requests` is on, so a benchmark
sending millions of requests can turn it off and a long run cannot grow it without bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the simulator handled it.

    `time` is the simulator's monotonic clock at arrival; `http_status` is None when no answer was sent
    (reset); `applied` is True when this request moved the instance to STOPPING; `fault` names the
    injected fault (see faults.KINDS) or is None.
    """

    time: float
    method: str
    project_id: str
    id: str
    http_status: int | None
    error_code: str | None
    applied: bool
    fault: str | None


class ProjectStats:
    """Counters of one project."""

    __slots__ = ("by_status", "faults", "requests", "state_changes", "throttled")

    def __init__(self) -> None:
        self.requests = 0
        self.by_status: dict[int, int] = {}
        self.throttled = 0
        self.faults: dict[str, int] = {}
        self.state_changes = 0

    def answered(self, status: int) -> None:
        """Count one answer by HTTP status."""
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def fault(self, kind: str) -> None:
        """Count one injected fault."""
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counters (status codes as strings)."""
        return {
            "requests": self.requests,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "throttled": self.throttled,
            "faults": dict(sorted(self.faults.items())),
            "state_changes": self.state_changes,
        }


class Stats:
    """Counters of every project that received a request, and their totals."""

    __slots__ = ("projects",)

    def __init__(self) -> None:
        self.projects: dict[str, ProjectStats] = {}

    def project(self, project_id: str) -> ProjectStats:
        """The counters of one project (made on first use)."""
        stats = self.projects.get(project_id)
        if stats is None:
            stats = self.projects[project_id] = ProjectStats()
        return stats

    def totals(self) -> ProjectStats:
        """The sum over all projects."""
        total = ProjectStats()
        for stats in self.projects.values():
            total.requests += stats.requests
            total.throttled += stats.throttled
            total.state_changes += stats.state_changes
            for status, n in stats.by_status.items():
                total.by_status[status] = total.by_status.get(status, 0) + n
            for kind, n in stats.faults.items():
                total.faults[kind] = total.faults.get(kind, 0) + n
        return total

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: {"totals": {...}, "projects": {project_id: {...}}}."""
        return {
            "totals": self.totals().as_dict(),
            "projects": {p: s.as_dict() for p, s in self.projects.items()},
        }
