"""The coordinator of a job: `bulkops stop INPUT --redis URL --job NAME --report R`.

    check_job(...)        before anything is sent: the job is new, or (--resume) the one this input started
    coordinate(...)       publish the job; feed its rows (`feed.Feeder`); work on rows like any worker
                          (`worker.work`); collect the finals into the one report R; mark the job done

The report is written here only: the rows decided at once (invalid, duplicates) as they are read, and
every final the workers wrote to Redis, streamed from the finals stream (XREAD), each line once (a
`LineBits` of the lines written), then XDELed from the stream. A coordinator that dies loses nothing:
the workers go on (they need it for nothing but new rows), the finals wait in their stream, and the same
command with `--resume` re-attaches: it writes the finals the report lacks and publishes the rows that
are neither final, nor queued, nor in the report.

The job is over when every row is published (`fed`) and the streams and the finals stream are empty
(`IDLE`, one atomic look): then `state` is `done`, workers exit 0, and every key of the job expires
`JOB_TTL` later. `bulkops job cancel` sets `state` to `cancelled`: no row is handed out any more, rows in
hand finish, the rest are recorded `skipped` (`bulkops.cancelled`), exit 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import structlog

from bulkops.engine.run import Run
from bulkops.errors import ConfigError
from bulkops.io.linebits import LineBits
from bulkops.io.report import ReportWriter
from bulkops.io.report_read import iter_records
from bulkops.io.resume import ResumeState, utc_now
from bulkops.job.feed import Feeder, cancelled
from bulkops.job.grace import AWAY_PAUSE, REDIS_GRACE, Grace, errors, job_gone
from bulkops.job.keys import GROUP, JOB_TTL, JobKeys
from bulkops.job.meta import CANCELLED, DONE, RUNNING, JobMeta, job_fields
from bulkops.job.scripts import FINAL, IDLE, REAP
from bulkops.job.worker import consumer_name, presence, work
from bulkops.models import Outcome, Result, Target
from bulkops.options import Options
from bulkops.summary import RunStats

log = structlog.get_logger("bulkops.job")

#: Finals taken from the finals stream in one read, and the longest a read waits (ms).
COLLECT_BATCH = 512
COLLECT_BLOCK_MS = 200


async def read_meta(client: Any, keys: JobKeys) -> JobMeta | None:
    fields = await client.hgetall(keys.meta)
    return JobMeta(keys.name, fields) if fields else None


async def check_job(url: str, name: str, *, resuming: bool, input_sha: str, options: Options) -> None:
    """Refuse (ConfigError, one line, nothing sent) a job name in use without --resume, or --resume of a
    job started from another input or against another endpoint or credential."""
    from bulkops.redis.client import open_client

    keys = JobKeys(name)
    client = open_client(url)
    try:
        meta = await read_meta(client, keys)
    finally:
        await client.aclose()
    if meta is None:
        return
    if not resuming:
        raise ConfigError(
            f"job {name} already exists in Redis (state {meta.state}): --resume re-attaches to it, or "
            "give another --job name"
        )
    if meta.fields.get("input") != input_sha:
        raise ConfigError(f"job {name} was started from another input: give the same INPUT to --resume it")
    meta.check_joiner(options.endpoint, options.credentials)


class Coordinator:
    """One coordinator run (see the module docstring)."""

    def __init__(
        self,
        client: Any,
        url: str,
        keys: JobKeys,
        options: Options,
        writer: ReportWriter,
        stats: RunStats,
        grace: Grace,
    ) -> None:
        self.client = client
        self.grace = grace
        self.url = url
        self.keys = keys
        self.options = options
        self.writer = writer
        self.stats = stats
        self.written = LineBits()
        self.consumer = consumer_name()
        self.attached = False
        self.resume: ResumeState | None = None
        self.queued_lines: set[int] = set()
        self.feeder = Feeder(client, keys, self.record, self.known, grace=grace)
        self.work_stats = RunStats(command=options.operation.name)
        self.run: Run | None = None
        self.worker_scope: anyio.CancelScope | None = None
        self.stopping = False
        self.over = False
        self._final = client.register_script(FINAL)
        self._idle = client.register_script(IDLE)
        self._reap = client.register_script(REAP)

    # -- the report -------------------------------------------------------------------------------------

    def record(self, results: list[Result]) -> None:
        """Write results to the report, each line once."""
        fresh = [r for r in results if not self.written.add(r.line)]
        if not fresh:
            return
        self.writer.write_many(fresh)
        for r in fresh:
            self.stats.tally(r)

    async def known(self, targets: list[Target]) -> set[int]:
        """Lines of `targets` not to publish: in the report, final in Redis, or queued in a stream; on a
        --resume of a job Redis no longer has, the rows the report says are done."""
        if not self.attached:
            resume = self.resume
            if resume is None:
                return set()
            skip = {t.line for t in targets if resume.done(t.project_id, t.id) or resume.line_done(t.line)}
            self.stats.resumed_skips += len(skip)
            return skip
        lines = [t.line for t in targets]
        finals = await self.client.hmget(self.keys.final, [str(line) for line in lines])
        return {
            line
            for line, final in zip(lines, finals, strict=True)
            if final is not None or line in self.written or line in self.queued_lines
        }

    # -- start ------------------------------------------------------------------------------------------

    async def start(self, *, input_sha: str, report_path: str | None, resume: ResumeState | None) -> None:
        """Create the job, or re-attach to it (--resume): what the report holds, what the streams hold."""
        k = self.keys
        meta = await read_meta(self.client, k)
        self.resume = resume
        if meta is not None:
            if resume is None:
                raise ConfigError(f"job {k.name} already exists in Redis: --resume re-attaches to it")
            self.attached = True
            if report_path is not None:
                for rec in iter_records(report_path):
                    self.written.add(int(rec["line"]))
                    if not Outcome(rec["outcome"]).succeeded:
                        self.stats.resumed_unsuccessful += 1
            projects = await self.client.smembers(k.projects)
            for project_id in projects:
                for _id, fields in await self.client.xrange(k.stream(project_id)):
                    self.queued_lines.add(int(fields["l"]))
            await self.feeder.adopt(set(projects))
            if meta.state == RUNNING:
                await self.client.persist(k.meta)
            log.info("bulkops.job.attached", job=k.name, state=meta.state, queued=len(self.queued_lines))
            return
        fields = job_fields(self.options, input_sha, utc_now())
        if not await self.client.hsetnx(k.meta, "state", RUNNING):
            raise ConfigError(f"job {k.name} was created by another coordinator just now")
        await self.client.hset(k.meta, mapping=fields)
        log.info("bulkops.job.created", job=k.name)

    # -- the run ----------------------------------------------------------------------------------------

    async def run_job(self, items: Iterator[Target | Result]) -> None:
        async with presence(self.client, self.keys, self.consumer), anyio.create_task_group() as tg:
            tg.start_soon(self._feed, items)
            tg.start_soon(self._work)
            await self._collect()
            tg.cancel_scope.cancel()

    async def _feed(self, items: Iterator[Target | Result]) -> None:
        await self.feeder.feed(items)

    async def _work(self) -> None:
        def attach(run: Run, scope: anyio.CancelScope) -> None:
            self.run, self.worker_scope = run, scope
            if self.stopping:
                run.wind_down()

        await work(
            self.client,
            self.url,
            self.keys,
            self.consumer,
            self.options,
            stats=self.work_stats,
            grace=self.grace,
            local=self.record,
            on_run=attach,
        )

    def wind_down(self) -> None:
        """Ctrl-C: stop feeding, finish the rows in hand, write what is final; the job stays for --resume."""
        self.stopping = True
        self.feeder.stopping = True
        if self.run is not None:
            self.run.wind_down()

    def abort(self) -> None:
        self.wind_down()
        if self.worker_scope is not None:
            self.worker_scope.cancel()

    async def _collect(self) -> None:
        """Stream the finals into the report until the job is over (or the run is stopped). Redis away:
        look again every AWAY_PAUSE s (JobError after the grace); the job gone from Redis: JobError."""
        last = "0-0"
        while True:
            try:
                last, more, over = await self._collect_once(last)
            except errors() as exc:
                self.grace.trouble(exc, "collecting the finals")
                await anyio.sleep(AWAY_PAUSE)
                continue
            self.grace.ok()
            if over:
                return
            if more:
                continue
            if self.feeder.fed and await self._is_idle():
                break
        await self._finish(CANCELLED if self.feeder.cancelled else DONE)

    async def _collect_once(self, last: str) -> tuple[str, bool, bool]:
        """One read of the finals stream: (the last id read, whether there was any, whether the run is
        stopped and its worker done)."""
        k = self.keys
        got = await self.client.xread({k.finals: last}, count=COLLECT_BATCH, block=COLLECT_BLOCK_MS)
        entries = got[0][1] if got else []
        if entries:
            self.record([_result(json.loads(fields["r"])) for _id, fields in entries])
            ids = [entry_id for entry_id, _ in entries]
            await self.client.xdel(k.finals, *ids)
            return ids[-1], True, False
        if self.stopping:
            return last, False, self.run is None or self.work_stats.finished is not None
        state = await self.client.hget(k.meta, "state")
        if state is None:
            raise job_gone(k.name)
        if state == CANCELLED:
            self.feeder.cancelled = True
            if self.feeder.fed:
                await self._sweep_cancelled()
        return last, False, False

    async def _is_idle(self) -> bool:
        k = self.keys
        streams = [k.stream(p) for p in sorted(self.feeder.streams)]
        return bool(
            await self.grace.call("collecting the finals", lambda: self._idle(keys=[k.finals, *streams]))
        )

    async def _sweep_cancelled(self) -> None:
        """After a cancel: the rows still queued (and those of dead workers) are recorded skipped."""
        k = self.keys
        for project_id in sorted(self.feeder.streams):
            stream = k.stream(project_id)
            await self._reap(keys=[stream], args=[GROUP, self.consumer, k.hb_prefix, 256])
            got = await self.client.xreadgroup(GROUP, self.consumer, {stream: "0"}, count=256)
            got += await self.client.xreadgroup(GROUP, self.consumer, {stream: ">"}, count=256)
            for _stream, entries in got:
                for entry_id, fields in entries:
                    if not fields:
                        continue
                    r = cancelled(Target(int(fields["l"]), project_id, fields["i"]))
                    from bulkops.io.report import record_line

                    await self._final(
                        keys=[k.final, k.finals, stream, k.meta],
                        args=[GROUP, entry_id, r.line, r.outcome.value, record_line(r)],
                    )

    async def _finish(self, state: str) -> None:
        """The job is over: say so (workers exit), and let its keys expire `JOB_TTL` from now."""
        k = self.keys

        async def finish() -> None:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hset(k.meta, mapping={"state": state, "ended": utc_now()})
                for key in (k.meta, k.projects, k.final, k.finals, k.workers):
                    pipe.expire(key, JOB_TTL)
                for project_id in sorted(self.feeder.streams):
                    pipe.expire(k.stream(project_id), JOB_TTL)
                await pipe.execute()

        await self.grace.call("ending the job", finish)
        self.over = True
        log.info("bulkops.job.finished", job=k.name, state=state, rows=self.stats.rows)


def _result(rec: dict[str, Any]) -> Result:
    """A final record, as a worker wrote it, back into a `Result`."""
    return Result(
        int(rec["line"]), rec.get("project_id"), rec.get("id"), Outcome(rec["outcome"]), rec.get("status"),
        rec.get("http_status"), rec.get("error_code"), rec.get("error_msg"), rec.get("request_id"),
        int(rec.get("attempts") or 0), int(rec.get("elapsed_ms") or 0), rec.get("finished_at") or "",
    )  # fmt: skip


async def coordinate(
    items: Iterator[Target | Result],
    options: Options,
    writer: ReportWriter,
    *,
    url: str,
    job: str,
    input_sha: str,
    report_path: str | None,
    resume: ResumeState | None,
    stats: RunStats,
    grace: float = REDIS_GRACE,
    on_start: Any = None,
) -> Coordinator:
    """Run the coordinator (see the module docstring); `stats` counts what reached the report. `on_start`
    is called with the `Coordinator` once it runs (to attach signal handlers: `wind_down`, `abort`);
    `grace`: the seconds Redis may be away mid-job (`--redis-grace`) before it stops with JobError."""
    from bulkops.redis.client import open_client

    client = open_client(url)
    coordinator = Coordinator(client, url, JobKeys(job), options, writer, stats, Grace(grace))
    try:
        await coordinator.start(input_sha=input_sha, report_path=report_path, resume=resume)
        if on_start is not None:
            on_start(coordinator)
        await coordinator.run_job(items)
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
        w = coordinator.work_stats
        stats.requests, stats.stops_sent, stats.polls_sent = w.requests, w.stops_sent, w.polls_sent
        stats.retries, stats.throttled = w.retries, w.throttled
        stats.learned_rates = w.learned_rates
        stats.interrupted = coordinator.stopping
    return coordinator
