"""The fair dispatcher on a hand-stepped clock: no sleeping, time is a number passed to every call."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

from bulkops.engine.adaptive import AdaptiveBucket
from bulkops.engine.ratelimit import TokenBucket
from bulkops.engine.scheduler import Scheduler
from bulkops.models import Target
from bulkops.options import RateLimit


def _targets(projects: list[str], per_project: int) -> list[Target]:
    """Input sorted by project, as CSV exports usually are."""
    line = itertools.count(1)
    return [Target(next(line), p, f"id-{p}-{i}") for p in projects for i in range(per_project)]


def _scheduler(
    rate: float, burst: float | None = None, global_limit: RateLimit | None = None
) -> Scheduler[Target]:
    glob = TokenBucket(global_limit, 0.0) if global_limit is not None else None
    return Scheduler(lambda _p, now: TokenBucket(RateLimit(rate, burst), now), glob)


def _run(scheduler: Scheduler[Target], until: float, now: float = 0.0) -> list[tuple[float, Target]]:
    """Dispatch everything the scheduler allows up to `until`, waiting exactly as long as it says."""
    sent: list[tuple[float, Target]] = []
    while True:
        result = scheduler.pop(now)
        if isinstance(result, Target):
            sent.append((now, result))
        elif result is None or now + result > until:
            return sent
        else:
            assert result > 0
            now += result


def _max_in_window(times: list[float], window: float) -> int:
    """The most dispatches within any closed interval of length `window`."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > window + 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_sorted_input_reaches_n_times_r() -> None:
    """Four projects at R/s each, input sorted by project, send 4 x R per second together (no
    head-of-line blocking on the first project's limit)."""
    rate, burst, seconds = 10.0, 10, 10.0
    scheduler = _scheduler(rate)
    for target in _targets(["p1", "p2", "p3", "p4"], 400):
        scheduler.push(target, 0.0)
    sent = _run(scheduler, seconds)
    per_project = Counter(t.project_id for _, t in sent)
    # Each bucket: the burst at t=0 plus R per second, up to and including t=10.
    assert per_project == {p: burst + int(rate * seconds) for p in ["p1", "p2", "p3", "p4"]}
    # After the bursts, the aggregate rate is 4 x R in every second.
    steady = [t for t, _ in sent if t > 0]
    for second in range(1, 10):
        assert sum(second - 1 < t <= second for t in steady) == 4 * rate


def test_no_project_ever_exceeds_its_bucket() -> None:
    """In any window of T seconds a project gets at most burst + R x T requests, the bucket's exact bound."""
    rate, burst = 7.0, 3
    scheduler = _scheduler(rate, burst)
    for target in _targets(["a", "b", "c", "d"], 300):
        scheduler.push(target, 0.0)
    sent = _run(scheduler, 20.0)
    times: dict[str, list[float]] = defaultdict(list)
    for t, target in sent:
        times[target.project_id].append(t)
    for project_times in times.values():
        for window in (0.0, 0.1, 0.5, 1.0, 3.0):
            assert _max_in_window(project_times, window) <= burst + rate * window + 1e-9


def test_projects_take_turns() -> None:
    """With tokens everywhere, projects are served round-robin, not one queue after another."""
    scheduler = _scheduler(100.0)
    for target in _targets(["p1", "p2", "p3"], 5):
        scheduler.push(target, 0.0)
    order = [r.project_id for r in (scheduler.pop(0.0) for _ in range(6)) if isinstance(r, Target)]
    assert order == ["p1", "p2", "p3", "p1", "p2", "p3"]


def test_within_a_project_items_keep_input_order() -> None:
    """Rows of one project are sent in the order they were read."""
    scheduler = _scheduler(1000.0)
    targets = _targets(["p"], 50)
    for target in targets:
        scheduler.push(target, 0.0)
    assert [t for _, t in _run(scheduler, 1.0)] == targets


def test_global_bucket_caps_the_total_and_shares_it_fairly() -> None:
    """--global-rate caps all projects together, and each project gets an even share of it."""
    scheduler = _scheduler(10.0, global_limit=RateLimit(25.0, burst=5))
    for target in _targets(["p1", "p2", "p3", "p4"], 400):
        scheduler.push(target, 0.0)
    sent = _run(scheduler, 10.0)
    times = [t for t, _ in sent]
    assert len(sent) == 5 + 25 * 10
    for window in (0.0, 0.5, 1.0, 5.0):
        assert _max_in_window(times, window) <= 5 + 25.0 * window + 1e-9
    shares = Counter(t.project_id for _, t in sent)
    assert max(shares.values()) - min(shares.values()) <= 2


def test_push_later_waits_for_its_deadline_then_goes_first() -> None:
    """A retry with a backoff is not sent before its time, then goes ahead of the project's fresh rows."""
    scheduler = _scheduler(10.0, burst=1)
    fresh = _targets(["p"], 100)
    for target in fresh:
        scheduler.push(target, 0.0)
    retry = Target(999, "p", "retry")
    scheduler.push_later(retry, at=2.05)
    sent = _run(scheduler, 5.0)
    when = {target: t for t, target in sent}
    assert when[retry] >= 2.05
    before = [target for t, target in sent if t < when[retry]]
    assert len(before) == 21  # one token at 0, then one per 0.1 s up to 2.0
    assert sent[len(before)][1] is retry  # the very next send of the project


def test_due_retries_go_first_in_deadline_order() -> None:
    """Several retries that fell due together are sent earliest-deadline first, before fresh rows."""
    scheduler = _scheduler(10.0, burst=1)
    scheduler.push(Target(1, "p", "fresh"), 0.0)
    late, early = Target(2, "p", "late"), Target(3, "p", "early")
    scheduler.push_later(late, at=2.0)
    scheduler.push_later(early, at=1.0)
    assert [t.id for _, t in _run(scheduler, 10.0, now=3.0)] == ["early", "late", "fresh"]


def test_push_front_goes_before_queued_rows() -> None:
    """A retry that may go at once is the project's next send."""
    scheduler = _scheduler(10.0)
    scheduler.push(Target(1, "p", "a"), 0.0)
    scheduler.push_front(Target(2, "p", "b"), 0.0)
    assert [t.id for _, t in _run(scheduler, 1.0)] == ["b", "a"]


def test_pop_reports_wait_and_empty() -> None:
    """pop says how long until something can go, and None once nothing is queued or delayed."""
    scheduler = _scheduler(2.0, burst=1)
    assert scheduler.pop(0.0) is None
    scheduler.push(Target(1, "p", "a"), 0.0)
    scheduler.push(Target(2, "p", "b"), 0.0)
    assert isinstance(scheduler.pop(0.0), Target)
    assert scheduler.pop(0.0) == 0.5
    assert isinstance(scheduler.pop(0.5), Target)
    assert scheduler.pop(0.5) is None
    scheduler.push_later(Target(3, "q", "c"), at=4.0)
    assert scheduler.pop(1.0) == 3.0
    assert len(scheduler) == 1


def test_a_throttled_project_waits_and_others_go_on() -> None:
    """After a 429 drains one project's bucket, it waits its new interval while the others keep sending."""
    scheduler: Scheduler[Target] = Scheduler(lambda _p, now: AdaptiveBucket(RateLimit(10.0), now))
    for target in _targets(["slow", "fast"], 50):
        scheduler.push(target, 0.0)
    first = scheduler.pop(0.0)
    assert isinstance(first, Target) and first.project_id == "slow"
    bucket = scheduler.bucket("slow")
    assert isinstance(bucket, AdaptiveBucket)
    bucket.on_throttle(0.0)
    sent = _run(scheduler, 1.0)
    slow = [t for t, target in sent if target.project_id == "slow"]
    assert slow and slow[0] >= 1 / 7.0 - 1e-9
    assert sum(target.project_id == "fast" for _, target in sent) == 20  # burst 10 + 10/s


def test_drain_project_returns_everything_of_that_project_only() -> None:
    """When a project's circuit opens, all its queued and delayed rows come back and others are untouched."""
    scheduler = _scheduler(10.0)
    targets = _targets(["bad", "good"], 5)
    for target in targets:
        scheduler.push(target, 0.0)
    delayed = Target(100, "bad", "delayed")
    scheduler.push_later(delayed, at=1.0)
    scheduler.push_later(Target(101, "good", "delayed"), at=1.0)
    assert scheduler.pending() == 12
    assert scheduler.pending_for("bad") == 6
    drained = scheduler.drain_project("bad")
    assert drained == [t for t in targets if t.project_id == "bad"] + [delayed]
    assert scheduler.pending_for("bad") == 0
    assert scheduler.pending() == 6
    assert {t.project_id for _, t in _run(scheduler, 5.0)} == {"good"}
    assert scheduler.drain_project("unknown") == []


def test_a_drained_project_can_be_fed_again() -> None:
    """Pushing to a project after draining it works (its stale heap entry is skipped)."""
    scheduler = _scheduler(10.0)
    scheduler.push(Target(1, "p", "a"), 0.0)
    scheduler.drain_project("p")
    scheduler.push(Target(2, "p", "b"), 0.0)
    assert [t.id for _, t in _run(scheduler, 1.0)] == ["b"]
    assert len(scheduler) == 0


class _CountingBucket(TokenBucket):
    calls = 0

    def wait_time(self, now: float) -> float:
        _CountingBucket.calls += 1
        return super().wait_time(now)


def test_thousands_of_projects_cost_constant_work_per_dispatch() -> None:
    """With 5,000 projects each dispatch checks O(1) buckets (a heap), not every project."""
    _CountingBucket.calls = 0
    scheduler: Scheduler[Target] = Scheduler(lambda _p, now: _CountingBucket(RateLimit(2.0, burst=1), now))
    projects = [f"p{i:05d}" for i in range(5000)]
    for target in _targets(projects, 3):
        scheduler.push(target, 0.0)
    pushes = _CountingBucket.calls
    sent = _run(scheduler, 10.0)
    assert len(sent) == 15_000
    assert {t.project_id for _, t in sent[:5000]} == set(projects)  # everyone once before anyone twice
    assert (_CountingBucket.calls - pushes) / len(sent) <= 3
    assert scheduler.projects() == 5000


def test_push_many_is_push_in_order() -> None:
    """Rows brought back from the overflow in one go go out exactly as if pushed one by one."""
    one, many = _scheduler(10.0, burst=3), _scheduler(10.0, burst=3)
    rows = _targets(["p", "q"], 20)
    for target in rows:
        one.push(target, 0.0)
    many.push_many("p", [t for t in rows if t.project_id == "p"], 0.0)
    many.push_many("q", [t for t in rows if t.project_id == "q"], 0.0)
    many.push_many("q", [], 0.0)
    assert _run(one, 1.0) == _run(many, 1.0)
    assert one.pending() == many.pending() > 0
