"""`JobSource`: the engine's work source over a job's Redis streams, and `JobLimiter`, its limiter.

    claimer (one task per project) ─ token first ─► XREADGROUP COUNT 1 ─► ready ─► engine's dispatcher
    reaper (every REAP_EVERY s): the rows of workers whose heartbeat lapsed ─► front (they need a token)
    retries, polls, throttled rows: held here, in this worker's pending list (never handed to another)

A claimer takes a send slot for its project from the shared limiter (`JobLimiter.prepay`: the
`SharedLimiter`'s `admit`, one GCRA reservation in Redis, and its sleep) *before* it claims the project's
next row, so no claimed row waits for a token and the projects stay fair across every worker; the worker
then `admit`s that row on the credit it earned (no second slot). Rows that come back (a retry at T, a
poll, a throttled row, a reaped row) are admitted through the shared limiter at send time, as in a run
without a job. A worker holds at most `concurrency` rows (claimed and not final); a claimer whose project
had nothing to hand out looks again every EMPTY_POLL seconds (`HAS_ROWS`), without spending a slot.

A row delivered more than MAX_DELIVERIES times (its workers kept dying on it) ends `failed`
`bulkops.poisoned` without a request. A project given up (its circuit opened: 401/403s, or 429s for
--throttle-timeout) has its later rows claimed without a slot and recorded `skipped` here.

Why an adapter and not the seams alone: `WorkSource.take` is synchronous (the dispatcher calls it on its
hot path), and a claim is a Redis round trip, so the claims run as tasks of `read` and `take` hands out
what they claimed. Imports `engine` (jobs, records, seams), `models`, and this package's `keys`, `scripts`.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, deque
from typing import Any

import anyio
import structlog

from bulkops.engine.jobs import Flow, Job, Targets
from bulkops.engine.records import Records
from bulkops.engine.seams import Limiter
from bulkops.job.grace import Grace, errors, job_gone
from bulkops.job.keys import GROUP, HEARTBEAT_TTL_MS, JobKeys
from bulkops.job.meta import CANCELLED, DONE
from bulkops.job.scripts import IDLE, REAP
from bulkops.models import Outcome, Reply, Target

log = structlog.get_logger("bulkops.job")

POISONED = "bulkops.poisoned"
#: A row delivered more than this many times is recorded failed (bulkops.poisoned), not sent again.
MAX_DELIVERIES = 5
#: Seconds between two looks at the job (its state, new projects, whether it is over).
LOOK_EVERY = 0.25
#: Seconds between two sweeps for the rows of dead workers.
REAP_EVERY = 1.0
#: Seconds a claimer whose project had nothing to hand out waits before it looks again.
EMPTY_POLL = 0.2
#: Seconds a claimer waits after Redis did not answer.
TROUBLE_PAUSE = 1.0
#: Entries a sweep claims from one dead worker in one round trip.
REAP_MOST = 256
#: KEYS: the stream. Returns 1 when the group has entries it never delivered.
HAS_ROWS = """
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, g in ipairs(groups) do
  local name, last = nil, nil
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  if name == ARGV[1] then
    local r = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
    if #r > 0 then return 1 end
    return 0
  end
end
return 0
"""


class JobLimiter:
    """The engine's `Limiter` in a job: the shared limiter, with the slots claimers took ahead as credit."""

    def __init__(self, inner: Limiter) -> None:
        self.inner = inner
        self.credit: Counter[str] = Counter()

    async def prepay(self, project_id: str) -> None:
        """Take a shared slot for `project_id` now (before a claim), and wait for it."""
        await self.inner.admit(project_id)

    async def admit(self, project_id: str) -> None:
        if self.credit[project_id] > 0:
            self.credit[project_id] -= 1
            return
        await self.inner.admit(project_id)

    def learn(self, project_id: str, reply: Reply, *, throttled: bool, sent: float, now: float) -> None:
        self.inner.learn(project_id, reply, throttled=throttled, sent=sent, now=now)

    def learned_rates(self) -> dict[str, float]:
        return self.inner.learned_rates()


class JobSource:
    """The `seams.Feeder` of a job's worker (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        keys: JobKeys,
        consumer: str,
        limiter: JobLimiter,
        records: Records,
        flow: Flow,
        *,
        concurrency: int,
        grace: Grace,
    ) -> None:
        self.client = client
        self.keys = keys
        self.consumer = consumer
        self.limiter = limiter
        self.records = records
        self.flow = flow
        self.cap = concurrency
        self.held: dict[int, tuple[str, str]] = {}  # line -> (project, entry id): claimed, not final
        self.holding = 0  # rows held or being claimed (at most `cap`)
        self._room = anyio.Event()
        self.ready: deque[Job] = deque()
        self.front: deque[Job] = deque()
        self.later: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self.closed: dict[str, tuple[str, str]] = {}  # projects given up -> (code, why)
        self.projects: set[str] = set()
        self.unreachable = False  # the endpoint circuit opened: claim nothing more
        self.state = ""
        self.over = False  # the job is over for this worker: no more claims
        self._done_claiming = False
        self.claimed = 0
        self.reaped = 0
        self.poisoned = 0
        self._has_rows = client.register_script(HAS_ROWS)
        self._reap = client.register_script(REAP)
        self._idle = client.register_script(IDLE)
        self._tg: anyio.abc.TaskGroup | None = None
        self.grace = grace
        self._claiming: Counter[str] = Counter()  # claims in flight, per project
        self._claims: Counter[str] = Counter()  # claims started, per project
        self._reconciled = grace.back

    # -- the work source --------------------------------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        return self._done_claiming and not (self.ready or self.front or self.later)

    def take(self, now: float) -> Job | float | None:
        if self.front:
            return self.front.popleft()
        later = self.later
        if later and later[0][0] <= now:
            return heapq.heappop(later)[2]
        if self.ready:
            return self.ready.popleft()
        if later:
            return later[0][0] - now
        return None

    def push_later(self, job: Job, at: float) -> None:
        heapq.heappush(self.later, (at, next(self._seq), job))
        self.flow.notify()

    def push_front(self, job: Job, now: float) -> None:
        self.front.append(job)
        self.flow.notify()

    def give_up(self, project_id: str, code: str, why: str) -> list[Job]:
        self.closed[project_id] = (code, why)
        drained = [j for j in (*self.front, *self.ready) if j.project_id == project_id]
        drained += [j for _, _, j in self.later if j.project_id == project_id]
        self.front = deque(j for j in self.front if j.project_id != project_id)
        self.ready = deque(j for j in self.ready if j.project_id != project_id)
        self.later = [e for e in self.later if e[2].project_id != project_id]
        heapq.heapify(self.later)
        return drained

    def give_up_all(self, code: str, why: str) -> list[Job]:
        """The endpoint circuit: this worker cannot reach the endpoint, so it claims no more rows (the
        other hosts go on with the job); the rows it holds are returned, to be recorded."""
        self.unreachable = True
        drained = [*self.front, *self.ready, *(j for _, _, j in self.later)]
        self.front, self.ready, self.later = deque(), deque(), []
        return drained

    def wake_reader(self) -> None:
        self._room.set()

    def close(self) -> None:
        pass

    def queued(self) -> int:
        return len(self.ready) + len(self.front) + len(self.later)

    # -- rows held --------------------------------------------------------------------------------------

    def settled(self, line: int) -> tuple[str, str] | None:
        """The row of `line` has its final (written to Redis): it is no longer held. Its (project, entry)."""
        entry = self.held.pop(line, None)
        if entry is not None:
            self._release()
        return entry

    def _release(self) -> None:
        self.holding -= 1
        self._room.set()
        self.flow.notify()

    async def _wait_room(self) -> None:
        while self.holding >= self.cap:
            if self._room.is_set():  # one event for every waiting claimer: each wakes when a row settles
                self._room = anyio.Event()
            await self._room.wait()

    def _hold(self, project_id: str, entry_id: str, fields: dict[str, str]) -> Job:
        line = int(fields["l"])
        self.held[line] = (project_id, entry_id)
        return Job(Target(line, project_id, fields["i"]), project_id)

    # -- the intake task --------------------------------------------------------------------------------

    async def read(self, targets: Targets) -> None:
        """Claim the job's rows until it is over for this worker (or the run winds down: cancelled)."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._reaper)
                while not self.over:
                    await self._look()
                    if not self.over:
                        await anyio.sleep(LOOK_EVERY)
                tg.cancel_scope.cancel()
        finally:
            self._done_claiming = True
            self.flow.notify()

    async def _look(self) -> None:
        """The job's state and projects; start a claimer for each new project; is the job over?"""
        try:
            state, fed = await self.client.hmget(self.keys.meta, ["state", "fed"])
            projects = await self.client.smembers(self.keys.projects)
            idle = (
                fed == "1"
                and not self.held
                and await self._idle(keys=[self.keys.stream(p) for p in sorted(projects)])
            )
        except errors() as exc:
            self.grace.trouble(exc, "looking at the job")
            return
        self.grace.ok()
        if state is None and self.state:
            raise job_gone(self.keys.name)
        self.state = state or ""
        for project_id in sorted(set(projects) - self.projects):
            self.projects.add(project_id)
            assert self._tg is not None
            self._tg.start_soon(self._claimer, project_id)
        if state is None or state in (DONE, CANCELLED) or idle:
            self.over = True
            log.info("bulkops.job.over", state=state or "gone", claimed=self.claimed, reaped=self.reaped)

    async def _claimer(self, project_id: str) -> None:
        stream = self.keys.stream(project_id)
        empty = False
        while not self.unreachable:
            await self._wait_room()
            if project_id in self.closed:
                await self._skip_closed(project_id, stream)
                continue
            try:
                if empty and not await self._has_rows(keys=[stream], args=[GROUP]):
                    await anyio.sleep(EMPTY_POLL)
                    continue
                self.holding += 1
                try:
                    await self.limiter.prepay(project_id)
                    got = await self._claim(project_id, stream, 1)
                except BaseException:
                    self._release()
                    raise
            except errors() as exc:
                self.grace.trouble(exc, "claiming rows")
                await anyio.sleep(TROUBLE_PAUSE)
                continue
            entries = got[0][1] if got else []
            if not entries:
                self._release()  # the slot is spent on nothing: look before the next one
                empty = True
                continue
            empty = False
            entry_id, fields = entries[0]
            self.claimed += 1
            self.limiter.credit[project_id] += 1
            self.ready.append(self._hold(project_id, entry_id, fields))
            self.flow.notify()

    async def _claim(self, project_id: str, stream: str, count: int) -> Any:
        self._claiming[project_id] += 1
        self._claims[project_id] += 1
        try:
            return await self.client.xreadgroup(GROUP, self.consumer, {stream: ">"}, count=count)
        finally:
            self._claiming[project_id] -= 1

    async def _skip_closed(self, project_id: str, stream: str) -> None:
        """A project given up: claim its rows without a slot and record them skipped."""
        code, why = self.closed[project_id]
        try:
            got = await self._claim(project_id, stream, 16)
        except errors() as exc:
            self.grace.trouble(exc, "claiming rows")
            await anyio.sleep(TROUBLE_PAUSE)
            return
        entries = got[0][1] if got else []
        if not entries:
            await anyio.sleep(EMPTY_POLL)
            return
        for entry_id, fields in entries:
            self.holding += 1
            await self.records.skip(self._hold(project_id, entry_id, fields), code, why)

    async def _reaper(self) -> None:
        """Every REAP_EVERY seconds: take over the rows of workers whose heartbeat lapsed."""
        while True:
            await anyio.sleep(REAP_EVERY)
            if self._reconciled != self.grace.back and not self.grace.away:
                try:
                    if await self._reconcile():
                        self._reconciled = self.grace.back
                except errors() as exc:
                    self.grace.trouble(exc, "looking for rows claimed while Redis was away")
            if not self.grace.settled(HEARTBEAT_TTL_MS / 1000 + REAP_EVERY):
                continue  # Redis just came back: the live workers' heartbeats may not be there yet
            for project_id in sorted(self.projects):
                try:
                    taken = await self._reap(
                        keys=[self.keys.stream(project_id)],
                        args=[GROUP, self.consumer, self.keys.hb_prefix, REAP_MOST],
                    )
                except errors() as exc:
                    self.grace.trouble(exc, "taking over the rows of dead workers")
                    break
                if taken:
                    await self._took_over(project_id, taken)

    async def _reconcile(self) -> bool:
        """Redis is back: rows pending for this worker that it does not hold (a claim whose answer was
        lost with the connection) are held again, else they would wait forever (a live worker's rows are
        never reaped). False, to try again later, when a claim ran meanwhile (its row may not be held yet)."""
        mine = {entry_id for _project, entry_id in self.held.values()}
        for project_id in sorted(self.projects):
            stream, started = self.keys.stream(project_id), self._claims[project_id]
            if self._claiming[project_id]:
                return False
            pending = await self.client.xpending_range(
                stream, GROUP, min="-", max="+", count=REAP_MOST, consumername=self.consumer
            )
            if self._claiming[project_id] or self._claims[project_id] != started:
                return False
            lost = [p["message_id"] for p in pending if p["message_id"] not in mine]
            if not lost:
                continue
            log.warning("bulkops.job.reclaimed", project_id=project_id, rows=len(lost))
            for entry_id, fields in await self.client.xclaim(stream, GROUP, self.consumer, 0, lost):
                if fields and entry_id not in mine:
                    self.holding += 1
                    self.front.append(self._hold(project_id, entry_id, fields))
            self.flow.notify()
        return True

    async def _took_over(self, project_id: str, taken: list[Any]) -> None:
        log.info("bulkops.job.reaped", project_id=project_id, rows=len(taken))
        for entry_id, deliveries, line, instance_id in taken:
            self.reaped += 1
            self.holding += 1
            job = self._hold(project_id, entry_id, {"l": line, "i": instance_id})
            if int(deliveries) > MAX_DELIVERIES:
                self.poisoned += 1
                why = f"delivered {deliveries} times without a final: its workers died on it; not sent again"
                await self.records.finish(job, Outcome.FAILED, {"error_code": POISONED, "error_msg": why})
            elif project_id in self.closed:
                await self.records.skip(job, *self.closed[project_id])
            else:
                self.front.append(job)
        self.flow.notify()
