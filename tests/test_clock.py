"""The fake clock: sleepers wake only when fake time reaches them; autojump runs timed code instantly."""

from __future__ import annotations

import anyio
import pytest

from bulkops.clock import Clock, FakeClock, SystemClock
from bulkops.engine.ratelimit import TokenBucket
from bulkops.options import RateLimit

pytestmark = pytest.mark.anyio


def test_both_clocks_satisfy_the_protocol() -> None:
    """Engine code typed against Clock accepts the real and the fake clock."""
    clocks: list[Clock] = [SystemClock(), FakeClock()]
    assert all(isinstance(c.monotonic(), float) for c in clocks)


async def test_system_clock_sleep_zero_returns() -> None:
    """SystemClock.sleep(0) and negative sleeps return at once."""
    clock = SystemClock()
    await clock.sleep(0)
    await clock.sleep(-1)


async def test_fake_sleep_returns_only_after_advance_reaches_deadline() -> None:
    """A task sleeping on the fake clock stays asleep until someone moves time past its deadline."""
    clock = FakeClock(start=10.0)
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(5.0)
        woke.append(clock.monotonic())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        await anyio.wait_all_tasks_blocked()
        assert clock.sleepers == 1
        clock.advance(4.999)
        await anyio.wait_all_tasks_blocked()
        assert woke == []
        clock.advance(0.001)
    assert woke == [15.0]
    assert clock.sleepers == 0


async def test_fake_sleepers_wake_in_deadline_order() -> None:
    """One big advance wakes every due sleeper, earliest deadline first, ties in arrival order."""
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    async with anyio.create_task_group() as tg:
        for name, seconds in [("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("late", 9.0)]:
            tg.start_soon(sleeper, name, seconds)
            await anyio.wait_all_tasks_blocked()
        assert clock.next_deadline() == 1.0
        clock.advance(5.0)
        await anyio.wait_all_tasks_blocked()
        assert woke == ["a", "b1", "b2", "c"]
        assert clock.next_deadline() == 9.0
        clock.advance_to(9.0)
    assert woke[-1] == "late"


async def test_fake_sleep_zero_is_only_a_checkpoint() -> None:
    """sleep(0) on the fake clock returns without anyone advancing time."""
    clock = FakeClock()
    with anyio.fail_after(5):
        await clock.sleep(0)
    assert clock.sleepers == 0


async def test_cancelled_sleeper_is_forgotten() -> None:
    """A sleep cancelled by its task's scope leaves no ghost deadline behind."""
    clock = FakeClock()
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.sleep, 1.0)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert clock.sleepers == 0
    assert clock.next_deadline() is None


def test_advance_refuses_to_go_backwards() -> None:
    """Fake time is monotonic like the real clock it stands for."""
    clock = FakeClock(5.0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1.0)
    clock.advance_to(1.0)
    assert clock.now == 5.0


async def test_autojump_runs_sleeping_tasks_to_completion_instantly() -> None:
    """With autojump, tasks that sleep fake minutes finish, and fake time ends at the last deadline."""
    clock = FakeClock()
    finished: list[tuple[str, float]] = []

    async def worker(name: str, naps: list[float]) -> None:
        for nap in naps:
            await clock.sleep(nap)
        finished.append((name, clock.monotonic()))

    with anyio.fail_after(10):  # a safety net, not a timing assertion
        async with clock.autojumping(), anyio.create_task_group() as tg:
            tg.start_soon(worker, "a", [30.0, 30.0])
            tg.start_soon(worker, "b", [100.0])
            tg.start_soon(worker, "c", [1.0, 1.0, 1.0])
    assert sorted(finished) == [("a", 60.0), ("b", 100.0), ("c", 3.0)]


async def test_autojump_drives_a_rate_limited_loop() -> None:
    """A loop paced by a token bucket on the fake clock sends at exactly the bucket's rate."""
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(5.0, burst=1), clock.monotonic())
    sent: list[float] = []
    with anyio.fail_after(10):
        async with clock.autojumping():
            while len(sent) < 51:
                wait = bucket.wait_time(clock.monotonic())
                if wait:
                    await clock.sleep(wait)
                    continue
                bucket.take(clock.monotonic())
                sent.append(clock.monotonic())
    assert sent[-1] == pytest.approx(10.0)


async def test_autojump_waits_for_work_that_is_not_sleeping() -> None:
    """Autojump does not jump while another task is still making progress through the loop."""
    clock = FakeClock()
    steps = 0

    async def busy() -> None:
        nonlocal steps
        for _ in range(500):  # far more loop iterations than one settle round
            steps += 1
            await clock.sleep(0)
        await clock.sleep(1.0)

    with anyio.fail_after(10):
        async with clock.autojumping(settle=20), anyio.create_task_group() as tg:
            tg.start_soon(busy)
            tg.start_soon(clock.sleep, 0.5)
            await anyio.wait_all_tasks_blocked()
    assert steps == 500
    assert clock.now == 1.0
