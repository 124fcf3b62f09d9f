"""The fair per-project dispatcher: per-project FIFO queues, per-project token buckets, no head-of-line
blocking (DESIGN.md, hard part 1).

Pure and synchronous: every call takes `now` (the engine's `Clock.monotonic()`), so tests step time by hand.

    push(item, now)        append to its project's queue
    push_front(item, now)  put first in its project's queue (the engine's retries use push_later)
    push_later(item, at)   hold until `at` (a retry's backoff), then put it first in its project's queue
    pop(now)               the next item to send, with its project's token and the global token taken;
                           or the seconds to wait before anything could go; or None when nothing is left

How it stays fair and fast. Each project with queued items has one entry in a heap keyed by
(ready time, sequence): the time its bucket will next have a token, as last computed, and a counter that
grows with every (re)insertion. `pop` looks at the top entry only: if its time has come and its bucket
confirms a token, the project sends and goes back into the heap behind every other ready project (a new,
larger sequence number), so projects that all have tokens take turns, round-robin, and one project's queue
of thousands never holds up another's. If the bucket has no token after all (a 429 drained it), the entry
is re-keyed to the true time and the next one is tried. Each pop is O(log P) heap work for P projects
(amortized: a re-key happens only after a bucket changed behind the heap's back).

Ready times are computed when a project enters the heap; a bucket that got faster since (an `on_success`
raised its rate) is seen at that old time, at most one old interval late. A bucket that got slower is
re-checked before anything is sent, so a rate is never exceeded.

The global bucket (one credential's ceiling, `--global-rate`) is checked before any project is chosen:
while it has no token, `pop` returns its wait. Both tokens are taken only when an item is returned.

The engine must also wake on `push`: the float `pop` returns is the wait for what is queued now, and an
item pushed meanwhile for an idle project may be ready sooner.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from bulkops.engine.ratelimit import TokenBucket


class HasProject(Protocol):
    """Anything the scheduler can queue: it names its project."""

    @property
    def project_id(self) -> str: ...


T = TypeVar("T", bound=HasProject)

#: The least wait `pop` returns, so that float rounding never makes an engine spin on waits of 1e-17 s.
MIN_WAIT = 1e-6
_NOT_SCHEDULED = -1


class _Project(Generic[T]):
    __slots__ = ("bucket", "delayed", "entry", "queue")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.queue: deque[T] = deque()
        self.delayed = 0
        self.entry = _NOT_SCHEDULED  # sequence number of this project's live heap entry


class Scheduler(Generic[T]):
    """Per-project queues and buckets, dispatched fairly. See the module docstring.

    `bucket_for(project_id, now)` makes a project's bucket the first time the project is seen (pass e.g.
    `lambda p, now: AdaptiveBucket(options.rate_for(p), now)`); `global_bucket` caps all projects together.
    """

    def __init__(
        self,
        bucket_for: Callable[[str, float], TokenBucket],
        global_bucket: TokenBucket | None = None,
    ) -> None:
        self._bucket_for = bucket_for
        self._global = global_bucket
        self._projects: dict[str, _Project[T]] = {}
        self._ready: list[tuple[float, int, str]] = []  # (ready time, seq, project_id)
        self._delayed: list[tuple[float, int, T]] = []  # (due time, seq, item)
        self._seq = itertools.count()
        self._queued = 0
        self._now = 0.0

    # -- bookkeeping -----------------------------------------------------------------------------------

    def _project(self, project_id: str, now: float) -> _Project[T]:
        project = self._projects.get(project_id)
        if project is None:
            project = self._projects[project_id] = _Project(self._bucket_for(project_id, now))
        return project

    def _schedule(self, project_id: str, project: _Project[T], now: float) -> None:
        """Give a project with queued items a heap entry, if it has none."""
        if project.entry == _NOT_SCHEDULED:
            seq = next(self._seq)
            project.entry = seq
            heapq.heappush(self._ready, (now + project.bucket.wait_time(now), seq, project_id))

    def _tick(self, now: float) -> None:
        self._now = max(self._now, now)

    # -- input -----------------------------------------------------------------------------------------

    def push(self, item: T, now: float) -> None:
        """Append `item` to its project's queue."""
        self.push_many(item.project_id, [item], now)

    def push_many(self, project_id: str, items: list[T], now: float) -> None:
        """Append `items`, all of project `project_id`, in order (what `push` does for each, at once)."""
        if not items:
            return
        self._tick(now)
        project = self._project(project_id, now)
        project.queue.extend(items)
        self._queued += len(items)
        self._schedule(project_id, project, now)

    def push_front(self, item: T, now: float) -> None:
        """Put `item` first in its project's queue (retries go before fresh work)."""
        self._tick(now)
        project = self._project(item.project_id, now)
        project.queue.appendleft(item)
        self._queued += 1
        self._schedule(item.project_id, project, now)

    def push_later(self, item: T, at: float) -> None:
        """Hold `item` until `at`, then put it first in its project's queue."""
        project = self._project(item.project_id, self._now)
        project.delayed += 1
        heapq.heappush(self._delayed, (at, next(self._seq), item))

    def _release_due(self, now: float) -> None:
        if not self._delayed or self._delayed[0][0] > now:
            return
        due: list[T] = []
        while self._delayed and self._delayed[0][0] <= now:
            due.append(heapq.heappop(self._delayed)[2])
        for item in reversed(due):  # earliest deadline ends up first
            project = self._projects[item.project_id]
            project.delayed -= 1
            project.queue.appendleft(item)
            self._queued += 1
        for item in due:
            self._schedule(item.project_id, self._projects[item.project_id], now)

    # -- output ----------------------------------------------------------------------------------------

    def pop(self, now: float) -> T | float | None:
        """The next item to send (both tokens taken), or seconds to wait (> 0), or None when empty."""
        self._tick(now)
        self._release_due(now)
        global_wait = self._global.wait_time(now) if self._global is not None else 0.0
        ready = self._ready
        while ready:
            when, seq, project_id = ready[0]
            project = self._projects[project_id]
            if project.entry != seq:  # stale: the project was drained
                heapq.heappop(ready)
                continue
            if when > now:
                break
            wait = project.bucket.wait_time(now)
            if wait > 0.0:  # the bucket slowed down since the entry was made
                project.entry = next(self._seq)
                heapq.heapreplace(ready, (now + wait, project.entry, project_id))
                continue
            if global_wait > 0.0:
                return max(global_wait, MIN_WAIT)
            item = project.queue.popleft()
            self._queued -= 1
            project.bucket.take(now)
            if self._global is not None:
                self._global.take(now)
            if project.queue:
                project.entry = next(self._seq)
                heapq.heapreplace(ready, (now + project.bucket.wait_time(now), project.entry, project_id))
            else:
                project.entry = _NOT_SCHEDULED
                heapq.heappop(ready)
            return item
        next_time: float | None = ready[0][0] if ready else None
        if self._delayed and (next_time is None or self._delayed[0][0] < next_time):
            next_time = self._delayed[0][0]
        if next_time is None:
            return None
        return max(next_time - now, global_wait, MIN_WAIT)

    # -- inspection and control ------------------------------------------------------------------------

    def bucket(self, project_id: str) -> TokenBucket:
        """The project's bucket (made now if the project is new), for `on_throttle` / `on_success`."""
        return self._project(project_id, self._now).bucket

    @property
    def global_bucket(self) -> TokenBucket | None:
        """The bucket shared by all projects, if any."""
        return self._global

    def set_global_bucket(self, bucket: TokenBucket) -> None:
        """Cap all projects together from now on (a credential's quota learned mid-run)."""
        self._global = bucket

    def pending(self) -> int:
        """Items queued or delayed, over all projects."""
        return self._queued + len(self._delayed)

    def pending_for(self, project_id: str) -> int:
        """Items queued or delayed for one project."""
        project = self._projects.get(project_id)
        return 0 if project is None else len(project.queue) + project.delayed

    def queued_for(self, project_id: str) -> int:
        """Items of one project that are queued now (not counting delayed retries and polls)."""
        project = self._projects.get(project_id)
        return 0 if project is None else len(project.queue)

    def __len__(self) -> int:
        return self.pending()

    def buckets(self) -> list[tuple[str, TokenBucket]]:
        """Every project seen so far, with its bucket."""
        return [(project_id, project.bucket) for project_id, project in self._projects.items()]

    def projects(self) -> int:
        """How many projects the scheduler has seen (each keeps its bucket)."""
        return len(self._projects)

    def drain_project(self, project_id: str) -> list[T]:
        """Remove and return every queued and delayed item of a project (its circuit opened).

        Queued items come first, in queue order, then delayed ones by due time. O(delayed items) for the
        delayed heap, which is rebuilt; meant for the rare circuit opening, not for every pop.
        """
        project = self._projects.get(project_id)
        if project is None:
            return []
        items = list(project.queue)
        self._queued -= len(project.queue)
        project.queue.clear()
        project.entry = _NOT_SCHEDULED  # its heap entry, if any, is now stale
        if project.delayed:
            keep: list[tuple[float, int, T]] = []
            mine: list[tuple[float, int, T]] = []
            for entry in self._delayed:
                (mine if entry[2].project_id == project_id else keep).append(entry)
            heapq.heapify(keep)
            self._delayed = keep
            items.extend(entry[2] for entry in sorted(mine, key=lambda e: (e[0], e[1])))
            project.delayed = 0
        return items
