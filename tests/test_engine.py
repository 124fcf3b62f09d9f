"""The engine's decisions, driven by a scripted client on a fake clock (no network, no sleeping)."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from bulkops.clock import FakeClock
from bulkops.engine import Run, stop_instances
from bulkops.engine.ratelimit import PACING_MARGIN
from bulkops.io.resume import ResumeState
from bulkops.models import CIRCUIT_OPEN, DUPLICATE, INVALID_ID, Outcome, Reply, Result, Target
from bulkops.options import Options, RateLimit, RetryPolicy

pytestmark = pytest.mark.anyio

P1 = "a" * 32
P2 = "b" * 32
P3 = "c" * 32
P4 = "d" * 32


def iid(n: int) -> str:
    """A valid instance id numbered n."""
    return f"00000000-0000-4000-8000-{n:012x}"


OK = Reply(200, status="STOPPING", request_id="r")
STOPPED_6307 = Reply(400, error_code="ModelArts.6307", error_msg="The instance has already been stopped.")
STOPPING_6308 = Reply(400, error_code="ModelArts.6308", error_msg="The instance is stopping.")
E503 = Reply(503, error_code="ModelArts.0001", error_msg="busy")
RESET = Reply(None, error_code="bulkops.connection_error", error_msg="reset")
E429 = Reply(
    429,
    error_code="APIG.0308",
    error_msg="The throttling threshold has been reached: policy api over ratelimit,limit:5,time:1 second",
)
E403 = Reply(403, error_code="ModelArts.0203", error_msg="forbidden")


class ScriptedClient:
    """Answers from a per-instance script (last answer repeats); records every call with its fake time."""

    def __init__(
        self,
        clock: FakeClock,
        scripts: dict[str, list[Reply]] | None = None,
        default: Reply = OK,
        shows: dict[str, list[Reply]] | None = None,
    ) -> None:
        self.clock = clock
        self.scripts = scripts or {}
        self.shows = shows or {}
        self.default = default
        self.calls: list[tuple[float, str, str, str]] = []
        self.counts: Counter[str] = Counter()

    def _next(self, table: dict[str, list[Reply]], key: str, default: Reply) -> Reply:
        script = table.get(key)
        if not script:
            return default
        return script.pop(0) if len(script) > 1 else script[0]

    async def stop(self, project_id: str, instance_id: str) -> Reply:
        self.calls.append((self.clock.monotonic(), "stop", project_id, instance_id))
        self.counts[instance_id] += 1
        await self.clock.sleep(0.01)
        return self._next(self.scripts, instance_id, self.default)

    async def show(self, project_id: str, instance_id: str) -> Reply:
        self.calls.append((self.clock.monotonic(), "show", project_id, instance_id))
        await self.clock.sleep(0.01)
        return self._next(self.shows, instance_id, Reply(200, status="STOPPED"))


def opts(**kw: object) -> Options:
    """Options for a fake endpoint with fast retries."""
    base: dict[str, object] = {
        "endpoint": "http://127.0.0.1:9",
        "rate": RateLimit(1000.0),
        "concurrency": 8,
        "retry": RetryPolicy(max_attempts=5, base_delay=0.1, max_delay=1.0, budget_floor=1000),
    }
    base.update(kw)
    return Options(**base)  # type: ignore[arg-type]


@asynccontextmanager
async def started(
    items: Iterable[Target | Result], options: Options, client: ScriptedClient, clock: FakeClock, **kw: object
) -> AsyncIterator[Run]:
    """A run on the fake clock with time jumping whenever every task is blocked."""
    async with (
        clock.autojumping(),
        stop_instances(
            items,
            options,
            client=client,
            clock=clock,
            rng=random.Random(1),
            **kw,  # type: ignore[arg-type]
        ) as run,
    ):
        yield run


async def collect(
    items: Iterable[Target | Result], options: Options, client: ScriptedClient, clock: FakeClock, **kw: object
) -> list[Result]:
    """Run to the end and return every result."""
    out: list[Result] = []
    async with started(items, options, client, clock, **kw) as run:
        async for r in run:
            out.append(r)
    return out


def targets(project: str, n: int, start: int = 0, line0: int = 1) -> list[Target]:
    """n targets of one project."""
    return [Target(line0 + i, project, iid(start + i)) for i in range(n)]


async def test_every_row_gets_exactly_one_record() -> None:
    """Every input row, sent or not, ends with exactly one final record."""
    clock = FakeClock()
    items: list[Target | Result] = [*targets(P1, 50)]
    items.append(Result(51, P1, "bad", Outcome.INVALID, error_code=INVALID_ID, error_msg="x"))
    items.append(
        Result(52, P1, iid(0), Outcome.SKIPPED, error_code=DUPLICATE, error_msg="duplicate of line 1")
    )
    client = ScriptedClient(clock)
    results = await collect(items, opts(), client, clock)
    assert sorted(r.line for r in results) == list(range(1, 53))
    assert Counter(r.outcome for r in results) == {
        Outcome.ACCEPTED: 50,
        Outcome.INVALID: 1,
        Outcome.SKIPPED: 1,
    }


async def test_hand_built_bad_target_is_never_sent() -> None:
    """A Target built by hand with a bad id becomes an invalid record and no request."""
    clock = FakeClock()
    client = ScriptedClient(clock)
    results = await collect([Target(1, P1, "../../etc"), Target(2, "a/b", iid(1))], opts(), client, clock)
    assert {r.outcome for r in results} == {Outcome.INVALID}
    assert client.calls == []


async def test_transient_failure_is_retried_then_accepted() -> None:
    """A 503 then a 200 gives `accepted` after two attempts."""
    clock = FakeClock()
    client = ScriptedClient(clock, {iid(0): [E503, OK]})
    [r] = await collect(targets(P1, 1), opts(), client, clock)
    assert (r.outcome, r.attempts, r.http_status) == (Outcome.ACCEPTED, 2, 200)


async def test_lost_answer_then_6308_counts_as_success_and_stops_sending() -> None:
    """A reset then 6308 is a success, and no stop is sent after it."""
    clock = FakeClock()
    client = ScriptedClient(clock, {iid(0): [RESET, STOPPING_6308, OK]})
    [r] = await collect(targets(P1, 1), opts(), client, clock)
    assert r.outcome is Outcome.ALREADY_STOPPED
    assert r.error_code == "ModelArts.6308"
    assert client.counts[iid(0)] == 2


async def test_already_stopped_is_success() -> None:
    """6307 on the first attempt is `already_stopped`, one request."""
    clock = FakeClock()
    client = ScriptedClient(clock, {iid(0): [STOPPED_6307]})
    [r] = await collect(targets(P1, 1), opts(), client, clock)
    assert (r.outcome, r.attempts) == (Outcome.ALREADY_STOPPED, 1)


async def test_max_attempts_bounds_retries() -> None:
    """An instance that keeps failing is `failed` after exactly --max-attempts attempts."""
    clock = FakeClock()
    client = ScriptedClient(clock, {iid(0): [E503]})
    [r] = await collect(
        targets(P1, 1),
        opts(retry=RetryPolicy(max_attempts=3, base_delay=0.1, budget_floor=100)),
        client,
        clock,
    )
    assert (r.outcome, r.attempts, r.http_status) == (Outcome.FAILED, 3, 503)
    assert client.counts[iid(0)] == 3


async def test_throttled_requests_are_retried_and_counted() -> None:
    """A 429 is retried (not failed) and counted in the run's throttled figure."""
    clock = FakeClock()
    client = ScriptedClient(clock, {iid(0): [E429, E429, OK]})
    async with started(targets(P1, 1), opts(), client, clock) as run:
        results = [r async for r in run]
    assert results[0].outcome is Outcome.ACCEPTED
    assert run.stats.throttled == 2


async def test_circuit_opens_for_a_forbidden_project_only() -> None:
    """403s open one project's circuit: its rest is skipped, other projects are untouched, traffic bounded."""
    clock = FakeClock()
    items = [*targets(P1, 200), *targets(P2, 50, start=1000, line0=201)]
    client = ScriptedClient(clock, {iid(i): [E403] for i in range(200)})
    options = opts(concurrency=4, circuit_threshold=3)
    results = await collect(items, options, client, clock)
    by_project: dict[str, Counter[Outcome]] = defaultdict(Counter)
    for r in results:
        by_project[r.project_id or ""][r.outcome] += 1
    assert by_project[P2] == {Outcome.ACCEPTED: 50}
    assert by_project[P1][Outcome.SKIPPED] >= 200 - 3 - 4
    assert sum(by_project[P1].values()) == 200
    sent_p1 = sum(1 for c in client.calls if c[2] == P1)
    assert sent_p1 <= 3 + 4
    skipped = next(r for r in results if r.outcome is Outcome.SKIPPED)
    assert skipped.error_code == CIRCUIT_OPEN


async def test_wait_polls_until_stopped() -> None:
    """With wait, an accepted stop is polled until STOPPED and reported `stopped`."""
    clock = FakeClock()
    shows = {
        iid(0): [Reply(200, status="STOPPING"), Reply(200, status="STOPPING"), Reply(200, status="STOPPED")]
    }
    client = ScriptedClient(clock, shows=shows)
    [r] = await collect(targets(P1, 1), opts(wait=True), client, clock)
    assert (r.outcome, r.status, r.attempts) == (Outcome.STOPPED, "STOPPED", 4)
    assert [c[1] for c in client.calls] == ["stop", "show", "show", "show"]


async def test_wait_reports_stop_failed() -> None:
    """With wait, STOP_FAILED ends the row as `failed` with that status."""
    clock = FakeClock()
    client = ScriptedClient(clock, shows={iid(0): [Reply(200, status="STOP_FAILED")]})
    [r] = await collect(targets(P1, 1), opts(wait=True), client, clock)
    assert (r.outcome, r.status) == (Outcome.FAILED, "STOP_FAILED")


async def test_resume_with_wait_polls_rows_left_accepted_and_sends_no_second_stop(tmp_path: Path) -> None:
    """After Ctrl-C during --wait, `--resume --wait` polls the rows whose last record is `accepted` (no
    second stop) until STOPPED; rows already `stopped` are skipped."""
    import json

    from bulkops.io.resume import load_resume

    rows = targets(P1, 3)
    records = [
        {"line": 1, "project_id": P1, "id": iid(0), "outcome": "accepted"},
        {"line": 2, "project_id": P1, "id": iid(1), "outcome": "accepted"},
        {"line": 2, "project_id": P1, "id": iid(1), "outcome": "stopped"},
    ]
    report = tmp_path / "r.jsonl"
    report.write_text("".join(json.dumps(r) + "\n" for r in records))
    resume = load_resume(str(report))
    clock = FakeClock()
    client = ScriptedClient(clock)
    results = await collect(rows, opts(wait=True), client, clock, resume=resume)
    by_line = {r.line: r.outcome for r in results}
    assert by_line == {1: Outcome.STOPPED, 3: Outcome.STOPPED}
    assert [(c[1], c[3]) for c in client.calls if c[3] == iid(0)] == [("show", iid(0))]
    assert not [c for c in client.calls if c[3] == iid(1)]


async def test_wait_times_out() -> None:
    """With wait, an instance stuck in STOPPING fails with a timeout reason after --wait-timeout."""
    clock = FakeClock()
    client = ScriptedClient(clock, shows={iid(0): [Reply(200, status="STOPPING")]})
    [r] = await collect(targets(P1, 1), opts(wait=True, wait_timeout=60.0), client, clock)
    assert r.outcome is Outcome.FAILED
    assert r.error_code == "bulkops.wait_timeout"
    assert r.elapsed_ms >= 60_000


async def test_resume_skips_succeeded_rows() -> None:
    """Rows that succeeded in the earlier report are neither sent nor reported again."""
    clock = FakeClock()
    state = ResumeState()
    for t in targets(P1, 10)[:6]:
        state.succeeded.add(t.project_id, t.id, t.line)
    state.mark_line(11)
    items: list[Target | Result] = [*targets(P1, 10)]
    items.append(Result(11, P1, "bad", Outcome.INVALID, error_code=INVALID_ID, error_msg="x"))
    client = ScriptedClient(clock)
    async with started(items, opts(), client, clock, resume=state) as run:
        results = [r async for r in run]
    assert sorted(r.line for r in results) == [7, 8, 9, 10]
    assert run.stats.resumed_skips == 7
    assert len(client.calls) == 4


async def test_sorted_input_reaches_n_times_rate() -> None:
    """Input sorted by project over 4 projects is dispatched at 4 x R, no project above its own R."""
    clock = FakeClock()
    rate = 10.0
    items = [
        t for k, p in enumerate((P1, P2, P3, P4)) for t in targets(p, 100, start=k * 1000, line0=k * 100 + 1)
    ]
    client = ScriptedClient(clock)
    options = opts(rate=RateLimit(rate, 1), concurrency=16, adaptive=False)
    results = await collect(items, options, client, clock)
    assert len(results) == 400
    first = client.calls[0][0]
    last = client.calls[-1][0]
    # 100 rows per project with a burst of 1 need 99 intervals at the paced rate (99 % of 10/s): 10.0 s,
    # not 4 x 10.0 s; all four run side by side.
    paced = rate * (1 - PACING_MARGIN)
    assert last - first == pytest.approx(99 / paced, abs=0.05)
    for p in (P1, P2, P3, P4):
        times = sorted(c[0] for c in client.calls if c[2] == p)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 1 / rate - 1e-6


async def test_sorted_input_longer_than_the_window_still_reaches_n_times_rate() -> None:
    """Projects with more rows than the read-ahead window still run side by side (rows wait on disk)."""
    clock = FakeClock()
    rate = 50.0
    rows = 400
    items = [
        t
        for k, p in enumerate((P1, P2, P3, P4))
        for t in targets(p, rows, start=k * 10_000, line0=k * rows + 1)
    ]
    client = ScriptedClient(clock)
    options = opts(rate=RateLimit(rate, 1), concurrency=16, adaptive=False, lookahead=100)
    results = await collect(items, options, client, clock)
    assert sorted(r.line for r in results) == list(range(1, 4 * rows + 1))
    assert {r.outcome for r in results} == {Outcome.ACCEPTED}
    paced = rate * (1 - PACING_MARGIN)
    span = client.calls[-1][0] - client.calls[0][0]
    # One project at a time would need 4 x 8.1 s; side by side it is one project's 399 intervals.
    assert span == pytest.approx((rows - 1) / paced, abs=0.1)
    for p in (P1, P2, P3, P4):
        lines = [c for c in client.calls if c[2] == p]
        assert [c[3] for c in lines] == [
            iid(k * 10_000 + i) for k, q in enumerate((P1, P2, P3, P4)) if q == p for i in range(rows)
        ]  # first in, first out


async def test_retries_waiting_out_a_backoff_do_not_starve_a_project() -> None:
    """While some rows of a project wait out a retry backoff, its other rows (from the overflow) go on."""
    clock = FakeClock()
    items = targets(P1, 40)
    busy = Reply(503, error_code="ModelArts.0001", error_msg="busy", retry_after=1.0)
    client = ScriptedClient(clock, {iid(i): [busy, OK] for i in range(4)})
    options = opts(rate=RateLimit(100.0), concurrency=4, adaptive=False, lookahead=8)
    results = await collect(items, options, client, clock)
    assert {r.outcome for r in results} == {Outcome.ACCEPTED} and len(results) == 40
    # A retry waits out the server's Retry-After (1 s); the other 36 rows go out meanwhile.
    first_retry = min(t for t, _, _, i in client.calls if client.counts[i] == 2 and t > 0.5)
    before = {i for t, _, _, i in client.calls if t < first_retry}
    assert len(before - {iid(i) for i in range(4)}) == 36


async def test_global_rate_caps_the_total() -> None:
    """--global-rate caps requests per second across all projects."""
    clock = FakeClock()
    items = [
        t for k, p in enumerate((P1, P2, P3, P4)) for t in targets(p, 25, start=k * 1000, line0=k * 25 + 1)
    ]
    client = ScriptedClient(clock)
    options = opts(rate=RateLimit(100.0), global_rate=RateLimit(10.0, 1), concurrency=16, adaptive=False)
    await collect(items, options, client, clock)
    times = sorted(c[0] for c in client.calls)
    # 100 requests through a global bucket of 1 token at 99 % of 10/s: 99 intervals of 1 / 9.9 s.
    assert times[-1] - times[0] == pytest.approx(99 / (10.0 * (1 - PACING_MARGIN)), abs=0.05)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1 / 10.0 - 1e-6


async def test_graceful_stop_leaves_unsent_rows_without_records() -> None:
    """After stop(), in-flight requests finish, unsent rows get no record, so --resume sends them."""
    clock = FakeClock()
    client = ScriptedClient(clock)
    options = opts(rate=RateLimit(10.0, 1), concurrency=2, adaptive=False)
    async with started(targets(P1, 100), options, client, clock) as run:
        results = []
        async for r in run:
            results.append(r)
            if len(results) == 10:
                run.wind_down()
    assert 10 <= len(results) < 100
    assert len(client.calls) == len(results)
    assert run.stats.interrupted


async def test_resumed_invalid_rows_keep_exit_status_one() -> None:
    """A resumed run whose own rows all succeed still exits 1 if the report holds invalid rows."""
    clock = FakeClock()
    state = ResumeState()
    state.mark_line(2)
    items: list[Target | Result] = [Target(1, P1, iid(1))]
    items.append(Result(2, P1, "bad", Outcome.INVALID, error_code=INVALID_ID, error_msg="x"))
    client = ScriptedClient(clock)
    async with started(items, opts(), client, clock, resume=state) as run:
        results = [r async for r in run]
    assert [r.outcome for r in results] == [Outcome.ACCEPTED]
    assert run.stats.exit_code() == 1


class RaisingClient(ScriptedClient):
    """A scripted client whose calls for some instances raise (a bug, or the process out of files)."""

    def __init__(self, clock: FakeClock, stops: set[str], polls: frozenset[str] = frozenset()) -> None:
        super().__init__(clock)
        self.raising_stops = stops
        self.raising_polls = polls

    async def stop(self, project_id: str, instance_id: str) -> Reply:
        reply = await super().stop(project_id, instance_id)
        if instance_id in self.raising_stops:
            raise OSError(24, "Too many open files")
        return reply

    async def show(self, project_id: str, instance_id: str) -> Reply:
        reply = await super().show(project_id, instance_id)
        if instance_id in self.raising_polls:
            raise RuntimeError("a bug while polling")
        return reply


async def test_an_unexpected_exception_fails_its_row_and_the_run_goes_on() -> None:
    """An exception raised while handling one row ends that row `failed` (`bulkops.internal_error`);
    every other row still gets its own result."""
    clock = FakeClock()
    client = RaisingClient(clock, {iid(3), iid(7)})
    structlog.reset_defaults()  # a CLI test before this one may have left the level at info
    with capture_logs() as logged:
        results = await collect(targets(P1, 20), opts(concurrency=4), client, clock)
    errors = [e for e in logged if e["event"] == "bulkops.row.internal_error"]
    assert [(e["log_level"], e["id"]) for e in errors] == [("debug", iid(3)), ("debug", iid(7))]
    assert all(isinstance(e["exc_info"], OSError) for e in errors)  # rendered as a traceback
    by_line = {r.line: r for r in results}
    assert sorted(by_line) == list(range(1, 21)) and len(results) == 20
    for line in (4, 8):
        assert (by_line[line].outcome, by_line[line].error_code) == (Outcome.FAILED, "bulkops.internal_error")
        assert by_line[line].error_msg is not None and "Too many open files" in by_line[line].error_msg
    assert Counter(r.outcome for r in results)[Outcome.ACCEPTED] == 18


async def test_an_exception_while_polling_keeps_the_stop_accepted() -> None:
    """With --wait, an exception while polling a stop that was accepted leaves the row `accepted`, the
    error noted; the other rows are polled to `stopped`."""
    clock = FakeClock()
    client = RaisingClient(clock, set(), frozenset({iid(1)}))
    results = await collect(targets(P1, 3), opts(wait=True), client, clock)
    by_line = {r.line: r for r in results}
    assert [by_line[n].outcome for n in (1, 2, 3)] == [Outcome.STOPPED, Outcome.ACCEPTED, Outcome.STOPPED]
    assert by_line[2].error_code == "bulkops.internal_error"


E401 = Reply(401, error_code="APIGW.0301", error_msg="Incorrect IAM authentication information")


@pytest.mark.parametrize(
    "poll",
    [E401, E403, Reply(400, error_code="ModelArts.0101", error_msg="bad request"), E503],
    ids=["401", "403", "400", "503-until-wait-timeout"],
)
async def test_a_poll_that_cannot_finish_leaves_the_stop_accepted(poll: Reply) -> None:
    """With --wait, a status poll answered 401/403/other 4xx (or 5xx until --wait-timeout) leaves an
    accepted stop `accepted` with the poll's error noted, and does not count toward the circuit."""
    clock = FakeClock()
    client = ScriptedClient(clock, shows={iid(i): [poll] for i in range(6)})
    options = opts(wait=True, wait_timeout=30.0, circuit_threshold=2, concurrency=2)
    async with started(targets(P1, 6), options, client, clock) as run:
        results = [r async for r in run]
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 6
    assert all(r.error_code == poll.error_code and r.http_status == poll.http_status for r in results)
    assert all(r.error_msg and r.error_msg.startswith("stop accepted; polling failed") for r in results)
    assert run.stats.circuits_opened == []
    assert Counter(c[1] for c in client.calls)["stop"] == 6


async def test_rows_sent_then_skipped_by_the_circuit_are_failed_with_their_last_answer() -> None:
    """A row that was sent and waits on a retry when its project's circuit opens is `failed`, naming the
    circuit and its last answer (a 503 here), not `skipped` as if never sent."""
    clock = FakeClock()
    scripts = {iid(0): [E503, OK], **{iid(i): [E403] for i in range(1, 8)}}
    client = ScriptedClient(clock, scripts)
    options = opts(concurrency=8, circuit_threshold=3, retry=RetryPolicy(base_delay=5.0))
    results = await collect(targets(P1, 8), options, client, clock)
    first = next(r for r in results if r.line == 1)
    assert (first.outcome, first.http_status, first.error_code, first.attempts) == (
        Outcome.FAILED,
        503,
        CIRCUIT_OPEN,
        1,
    )
    assert "ModelArts.0001: busy" in (first.error_msg or "")
    assert client.counts[iid(0)] == 1


async def test_a_project_that_arrives_after_the_window_is_full_gets_a_share_from_the_start() -> None:
    """Sorted input, concurrency the bound: a project whose rows all wait on disk (the read-ahead window
    was full when they came) is sent from the start, not after the others finish."""
    clock = FakeClock()
    items = [
        t for k, p in enumerate((P1, P2, P3)) for t in targets(p, 400, start=k * 1000, line0=k * 400 + 1)
    ]
    client = ScriptedClient(clock)
    options = opts(rate=RateLimit(10_000.0), concurrency=4, adaptive=False, lookahead=100)
    results = await collect(items, options, client, clock)
    assert len(results) == 1200
    first = {p: min(c[0] for c in client.calls if c[2] == p) for p in (P1, P2, P3)}
    span = max(c[0] for c in client.calls)
    assert max(first.values()) < 0.05 * span, (first, span)
