"""`SharedLimiter`, the engine's limiter over Redis: what one runner learns, every runner applies.

Two limiters in one process on one real Redis stand for two runners (two hosts would share the same
keys: the scope is the endpoint and the credential). Waits are read from the reservations Redis makes,
not timed.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from _redis import RedisServer

from bulkops.clock import SystemClock
from bulkops.engine.adaptive import BETA
from bulkops.engine.limits import LocalLimiter
from bulkops.models import Reply
from bulkops.options import Options, RateLimit
from bulkops.redis import SharedLimiter, share_limits

pytestmark = pytest.mark.anyio

OPTIONS = Options(endpoint="http://127.0.0.1:9", rate=RateLimit(50.0, 1.0), slow_start=False)
HINTED = "The throttling threshold has been reached: policy api over ratelimit,limit:5,time:1 second"
BARE = "The throttling threshold has been reached"


def throttled(message: str, retry_after: float | None = None) -> Reply:
    return Reply(429, error_code="APIG.0308", error_msg=message, retry_after=retry_after)


def limiter(make: object) -> SharedLimiter:
    local = LocalLimiter(OPTIONS, SystemClock(), {})
    return make(local)  # type: ignore[operator, no-any-return]


async def settle(shared: SharedLimiter, project_id: str, check: object) -> None:
    """Book one slot at a time until `check(rate)` holds for the rate Redis paces at (bounded)."""
    with anyio.fail_after(5.0):
        while True:
            await shared.limits.acquire(project_id, limit=OPTIONS.rate)
            if check(shared.limits.rate(project_id)):  # type: ignore[operator]
                return
            await anyio.sleep(0.02)


async def test_a_hint_one_runner_learns_paces_the_other_at_once(redis_server: RedisServer) -> None:
    """Runner A gets a 429 saying `limit:5,time:1 second`; runner B, told --rate 50, is paced at 98 % of
    5/s from its next bookings on (its slots come 1/4.9 s apart)."""
    async with (
        share_limits(redis_server.url, OPTIONS) as make_a,
        share_limits(redis_server.url, OPTIONS) as make_b,
    ):
        a, b = limiter(make_a), limiter(make_b)
        await a.admit("p1")
        await b.admit("p1")
        now = a.clock.monotonic()
        a.learn("p1", throttled(HINTED), throttled=True, sent=now, now=now)
        await settle(b, "p1", lambda rate: rate is not None and rate < 6)
        assert b.limits.rate("p1") == pytest.approx(5 * 0.98)
        waits = await b.limits.acquire_many("p1", 3, limit=OPTIONS.rate)
        assert waits[2] - waits[1] == pytest.approx(1 / 4.9, abs=0.01)


async def test_a_bare_429_cuts_the_shared_rate_not_to_one_runners_share(redis_server: RedisServer) -> None:
    """A 429 without a hint cuts the project's shared rate by the AIMD factor of what Redis paced at (50/s
    less 1 % -> x0.7), not to what this one runner got through; 429s of the same burst cut once."""
    async with (
        share_limits(redis_server.url, OPTIONS) as make_a,
        share_limits(redis_server.url, OPTIONS) as make_b,
    ):
        a, b = limiter(make_a), limiter(make_b)
        await a.admit("p1")
        before = a.limits.rate("p1")
        assert before == pytest.approx(50 * 0.99)
        now = a.clock.monotonic()
        for _ in range(5):
            a.learn("p1", throttled(BARE), throttled=True, sent=now, now=now)
        await settle(b, "p1", lambda rate: rate is not None and rate < before)
        assert b.limits.rate("p1") == pytest.approx(before * BETA)


async def test_retry_after_holds_every_runner(redis_server: RedisServer) -> None:
    """A 429 with `Retry-After: 2` seen by runner A: runner B's next slot is about 2 s away."""
    async with (
        share_limits(redis_server.url, OPTIONS) as make_a,
        share_limits(redis_server.url, OPTIONS) as make_b,
    ):
        a, b = limiter(make_a), limiter(make_b)
        await a.admit("p1")
        now = a.clock.monotonic()
        a.learn("p1", throttled(BARE, retry_after=2.0), throttled=True, sent=now, now=now)
        client = a.limits._client
        assert client is not None
        with anyio.fail_after(5.0):  # until the publisher has written the hold
            while await client.hget(a.limits.keys.project("p1"), "hold") is None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        wait = await b.limits.acquire("p1", limit=OPTIONS.rate)
        assert 1.5 <= wait <= 2.1


async def test_redis_unreachable_at_start_is_one_error_and_nothing_runs(tmp_path: object) -> None:
    """`share_limits` on a Redis that does not answer raises ConfigError with one line naming it."""
    from _redis import free_port

    from bulkops.errors import ConfigError

    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigError, match=r"^Redis at redis://127\.0\.0\.1:\d+/0 is unreachable: [^\n]+$"):
        async with share_limits(url, OPTIONS):
            pass


def test_stop_with_redis_unreachable_refuses_before_anything_is_sent(tmp_path: Path) -> None:
    """`bulkops stop --redis` on a dead Redis: one error line naming it (without its password), exit 2,
    no report left behind, nothing sent; `--dry-run` makes the same check."""
    from _redis import free_port
    from _reliability import CLEAN_ENV
    from click.testing import CliRunner

    from bulkops.cli.main import main

    inp = tmp_path / "in.csv"
    inp.write_text("project_id,id\n" + "a" * 32 + ",00000000-0000-4000-8000-000000000001\n")
    report = tmp_path / "r.jsonl"
    url = f"redis://:s3cretpass@127.0.0.1:{free_port()}/0"
    args = ["stop", str(inp), "--endpoint", "http://127.0.0.1:9", "--yes", "--report", str(report)]
    for extra in ([], ["--dry-run"]):
        result = CliRunner().invoke(main, [*args, "--redis", url, *extra], env=CLEAN_ENV)
        assert result.exit_code == 2, result.output
        lines = [x for x in result.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("bulkops: error: Redis at redis://:***@127.0.0.1:")
        assert "s3cretpass" not in result.stderr
        assert not report.exists()


def test_dry_run_names_the_redis_the_limits_are_shared_through(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """`--dry-run --redis URL` checks that Redis answers and names it in the plan."""
    from _reliability import CLEAN_ENV
    from click.testing import CliRunner

    from bulkops.cli.main import main

    inp = tmp_path / "in.csv"
    inp.write_text("project_id,id\n" + "a" * 32 + ",00000000-0000-4000-8000-000000000001\n")
    args = ["stop", str(inp), "--endpoint", "http://127.0.0.1:9", "--dry-run", "--redis", redis_server.url]
    result = CliRunner().invoke(main, args, env=CLEAN_ENV)
    assert result.exit_code == 0, result.output
    assert f"limits shared through: {redis_server.url} (reachable)" in result.stderr
