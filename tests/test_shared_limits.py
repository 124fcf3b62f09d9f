"""Runners share their limits through a real redis-server (issue 14): buckets, learning, holds, failure."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio
from _redis import RedisServer, free_port
from structlog.testing import capture_logs

from bulkops.cli.command_limits import run_limits_command
from bulkops.clock import FakeClock
from bulkops.cloud.auth import Credentials
from bulkops.errors import ConfigError
from bulkops.options import RateLimit
from bulkops.redis import SharedLimits
from bulkops.redis.fallback import PACING
from bulkops.redis.gcra import START_MARGIN
from bulkops.redis.limits import KEY_TTL, PROBE_MAX
from bulkops.redis.naming import PREFIX

pytestmark = pytest.mark.anyio

ENDPOINT = "https://modelarts.cn-north-4.example.com"
AK, SK = "AKSHAREDTEST0000001", "SKsharedtestsecret0000000000000001"
CREDS = Credentials(ak=AK, sk=SK)


@asynccontextmanager
async def runners(
    url: str, n: int = 2, *, credentials: Credentials = CREDS, clock: FakeClock | None = None, **kw: Any
) -> AsyncIterator[list[SharedLimits]]:
    """`n` connected runners on one Redis (closed at the end)."""
    made = [
        SharedLimits(url, endpoint=ENDPOINT, credentials=credentials, runner_id=f"r{i}", clock=clock, **kw)
        for i in range(n)
    ]
    try:
        for limits in made:
            await limits.connect()
        yield made
    finally:
        for limits in made:
            await limits.aclose()


async def dump(url: str) -> dict[str, tuple[int, Any]]:
    """Every key in Redis: its TTL in milliseconds and its value."""
    client = redis.asyncio.from_url(url, decode_responses=True)
    out: dict[str, tuple[int, Any]] = {}
    try:
        async for key in client.scan_iter():
            kind = await client.type(key)
            value: Any
            if kind == "hash":
                value = await client.hgetall(key)
            elif kind == "zset":
                value = await client.zrange(key, 0, -1, withscores=True)
            else:
                value = await client.get(key)
            out[key] = (await client.pttl(key), value)
    finally:
        await client.aclose()
    return out


async def slot(limits: SharedLimits, project_id: str, limit: RateLimit) -> float:
    """When the slot an acquire reserved comes, on this process's monotonic clock (the wait is counted from
    Redis's TIME, read between our send and our receive: the midpoint keeps the error under half a round
    trip, whatever the load on the machine)."""
    asked = time.monotonic()
    wait = await limits.acquire(project_id, limit=limit)
    return (asked + time.monotonic()) / 2 + wait


def events(logs: Iterable[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_two_runners_on_one_redis_share_one_bucket(redis_server: RedisServer) -> None:
    """Two runners at the same project never send, together, more than rate + burst in any second."""
    rate, burst = 20.0, 5.0
    async with runners(redis_server.url) as (a, b):
        sends: list[float] = []
        for i in range(60):
            sends.append(await slot((a, b)[i % 2], "p1", RateLimit(rate, burst)))
    sends.sort()
    most = max(sum(1 for t in sends if start <= t < start + 1.0) for start in sends)
    assert most <= rate + burst
    # ...and the bucket is shared, not merely slow: 60 slots take about (60 - burst) / rate seconds, plus
    # the slots a new bucket holds back from its first burst (START_MARGIN of them, 4 at 19.8/s).
    held = min(burst - 1, max(1, int(START_MARGIN * rate * PACING)))
    assert sends[-1] - sends[0] == pytest.approx((60 - burst + held) / (rate * PACING), abs=0.1)


async def test_the_lowest_configured_rate_wins_and_the_disagreement_is_reported(
    redis_server: RedisServer,
) -> None:
    """When runs disagree about a rate, all pace at the lowest and the higher one warns, once."""
    async with runners(redis_server.url) as (a, b):
        with capture_logs() as logs:
            await a.acquire("p1", limit=RateLimit(20.0))
            await b.acquire("p1", limit=RateLimit(5.0))
            for _ in range(3):
                await a.acquire("p1", limit=RateLimit(20.0))
    assert a.rate("p1") == pytest.approx(5.0 * PACING)
    assert a.disagreements == {"p1": (20.0, 5.0)} and not b.disagreements
    warned = events(logs, "bulkops.redis.rate_disagrees")
    assert len(warned) == 1 and warned[0]["configured"] == 20.0 and warned[0]["used"] == 5.0


async def test_a_rate_learned_by_one_runner_paces_the_other_at_its_next_acquire(
    redis_server: RedisServer,
) -> None:
    """A 429 cut published by one runner slows every runner of that project, not only its own."""
    async with runners(redis_server.url) as (a, b):
        await a.acquire("p1", limit=RateLimit(50.0, 1.0))
        await b.learn("p1", rate=2.0, throttled=True)
        sends = [await slot(a, "p1", RateLimit(50.0, 1.0)) for _ in range(3)]
        assert a.rate("p1") == pytest.approx(2.0)
        assert sends[2] - sends[1] == pytest.approx(0.5, abs=0.01)
        # A raise within RAISE_QUIET of the cut is ignored: runners that did not see the 429s yet
        # must not undo it.
        await a.learn("p1", rate=40.0)
        await a.acquire("p1", limit=RateLimit(50.0, 1.0))
        assert a.rate("p1") == pytest.approx(2.0)


async def test_a_hold_published_by_one_runner_holds_both(redis_server: RedisServer) -> None:
    """A Retry-After learned by one runner parks the project for every runner, with no burst after."""
    async with runners(redis_server.url) as (a, b):
        await a.acquire("p1", limit=RateLimit(10.0, 10.0))
        held_at = time.monotonic()
        await a.learn("p1", hold_for=3.0, throttled=True)
        send_a = await slot(a, "p1", RateLimit(10.0, 10.0))
        send_b = await slot(b, "p1", RateLimit(10.0, 10.0))
    assert send_a == pytest.approx(held_at + 3.0, abs=0.05)
    assert send_b - send_a == pytest.approx(1 / (10.0 * PACING), abs=0.01)  # one at a time after it


async def test_a_credential_wide_hint_paces_every_project(redis_server: RedisServer) -> None:
    """A `policy user` limit learned on one project caps the credential's sends to all projects."""
    async with runners(redis_server.url) as (a, b):
        await a.learn("p1", rate=4.0, shared=True, throttled=True)
        sends = [await slot(b, f"p{i}", RateLimit(100.0, 1.0)) for i in range(5)]
    assert b.rate("*") == pytest.approx(4.0)
    assert sends[-1] - sends[0] == pytest.approx(4 * 0.25, abs=0.01)


async def test_clock_skew_between_runners_has_no_effect(redis_server: RedisServer) -> None:
    """Runners whose clocks are 30 s apart share one bucket exactly: only Redis TIME is read."""
    early, late = FakeClock(), FakeClock()
    late.advance(30.0)
    a = SharedLimits(redis_server.url, endpoint=ENDPOINT, credentials=CREDS, clock=early, runner_id="a")
    b = SharedLimits(redis_server.url, endpoint=ENDPOINT, credentials=CREDS, clock=late, runner_id="b")
    await a.connect()
    await b.connect()
    try:
        sends = [await slot((a, b)[i % 2], "p1", RateLimit(5.0, 1.0)) for i in range(6)]
    finally:
        await a.aclose()
        await b.aclose()
    gaps = [later - earlier for earlier, later in itertools.pairwise(sends)]
    assert gaps == pytest.approx([1 / (5.0 * PACING)] * 5, abs=0.01)


async def test_a_credential_wide_hold_then_rate_with_slots_pending(redis_server: RedisServer) -> None:
    """A credential-wide Retry-After holds every project; a rate learned while slots are booked paces them."""
    async with runners(redis_server.url) as (a, b):
        held_at = time.monotonic()
        await b.learn("p1", hold_for=1.0, shared=True, throttled=True)
        first = await slot(a, "p2", RateLimit(50.0, 1.0))
        assert first == pytest.approx(held_at + 1.0, abs=0.05)
        await a.learn("p2", rate=5.0, shared=True)
        sends = [await slot(a, f"p{i}", RateLimit(50.0, 1.0)) for i in range(3, 6)]
    assert sends[-1] - sends[0] == pytest.approx(2 / 5.0, abs=0.01)


async def test_every_key_lives_under_the_prefix_with_a_ttl(redis_server: RedisServer) -> None:
    """Nothing bulkops writes to Redis outlives a run for long: every key has a TTL and the prefix."""
    async with runners(redis_server.url) as (a, b):
        await a.acquire("p1", limit=RateLimit(5.0), global_limit=RateLimit(50.0))
        await b.learn("p2", rate=1.0, hold_for=1.0, throttled=True)
        await b.learn("p2", rate=1.0, shared=True)
        await a.heartbeat()
        keys = await dump(redis_server.url)
    assert len(keys) >= 8
    for key, (ttl, _value) in keys.items():
        assert key.startswith(PREFIX), key
        assert 0 < ttl <= KEY_TTL * 1000, key


@pytest.mark.parametrize(
    "credentials",
    [
        Credentials(ak=AK, sk=SK),
        Credentials(ak=AK, sk=SK, security_token="STStoken0123456789abcdef"),
        Credentials(auth_token="MIIEIAMtoken0123456789abcdefXYZ"),
    ],
    ids=["aksk", "aksk+token", "token"],
)
async def test_the_credential_is_never_stored(redis_server: RedisServer, credentials: Credentials) -> None:
    """No key or value in Redis holds the AK, the SK or a token: the credential is a keyed hash."""
    async with runners(redis_server.url, credentials=credentials) as (a, _b):
        await a.acquire("p1", limit=RateLimit(5.0), global_limit=RateLimit(50.0))
        await a.learn("p1", rate=1.0, hold_for=1.0, throttled=True)
        text = repr(await dump(redis_server.url))
    for secret in credentials.secrets():
        assert secret not in text
        assert secret.lower() not in text.lower()


async def test_script_flush_mid_run_costs_no_error(redis_server: RedisServer) -> None:
    """`SCRIPT FLUSH` while runners share: every call still answers from Redis, nothing is logged."""
    async with runners(redis_server.url) as (a, b):
        await a.acquire("p1", limit=RateLimit(10.0))
        admin = redis.asyncio.from_url(redis_server.url)
        await admin.script_flush()
        await admin.aclose()
        with capture_logs() as logs:
            await a.acquire("p1", limit=RateLimit(10.0))
            await b.learn("p1", rate=3.0)
            await b.heartbeat()
            await b.acquire("p1", limit=RateLimit(10.0))
        assert a.up and b.up
        assert b.rate("p1") == pytest.approx(3.0)
    assert not events(logs, "bulkops.redis.unavailable")


async def test_redis_killed_and_restarted_mid_run(redis_server: RedisServer) -> None:
    """Redis dies: acquire never raises, warns once, paces at rate / runners; back: shares again."""
    clock = FakeClock()
    limit = RateLimit(10.0, 1.0)
    async with runners(redis_server.url, clock=clock) as (a, b):
        await a.learn("p1", rate=4.0)
        await a.acquire("p1", limit=limit)
        await b.acquire("p1", limit=limit)
        await a.acquire("p1", limit=limit)  # now a has seen both runners
        redis_server.stop()
        with capture_logs() as logs:
            waits = [await a.acquire("p1", limit=limit) for _ in range(4)]
            await a.learn("p1", throttled=True)
            await a.heartbeat()
        assert not a.up
        assert waits == pytest.approx([0.0, 0.5, 1.0, 1.5])  # 4/s shared by 2 runners: 2/s each
        assert len(events(logs, "bulkops.redis.unavailable")) == 1
        redis_server.start()  # a fresh, empty Redis on the same port
        clock.advance(PROBE_MAX)
        with capture_logs() as logs:
            await a.acquire("p1", limit=limit)
            await b.heartbeat()
        assert a.up and b.up
        assert len(events(logs, "bulkops.redis.back")) == 1
        assert a.rate("p1") == pytest.approx(4.0)  # the learned rate survived the restart (re-seeded)
        await b.acquire("p1", limit=limit)
        assert b.rate("p1") == pytest.approx(4.0)


async def test_unreachable_redis_at_start_is_one_line_without_the_password() -> None:
    """Nothing listening: connect raises ConfigError, one line naming the URL, never its password."""
    url = f"redis://:hunter2secret@127.0.0.1:{free_port()}/0"
    limits = SharedLimits(url, endpoint=ENDPOINT, credentials=CREDS)
    with pytest.raises(ConfigError) as caught:
        await limits.connect()
    message = str(caught.value)
    assert "\n" not in message and "hunter2secret" not in message
    assert "redis://:***@127.0.0.1" in message


async def test_the_password_never_appears_in_logs_or_errors(tmp_path: Path) -> None:
    """A password-protected Redis: the password from the URL or the environment is never logged."""
    server = RedisServer(tmp_path, password="pw-Zq81-never-logged")
    server.start()
    try:
        with capture_logs() as logs:
            clock = FakeClock()
            async with runners(server.url, n=1, clock=clock) as (a,):
                await a.acquire("p1", limit=RateLimit(10.0))
                server.stop()
                await a.acquire("p1", limit=RateLimit(10.0))
                server.start()
                clock.advance(PROBE_MAX)
                await a.acquire("p1", limit=RateLimit(10.0))
            bare = server.url.replace(":pw-Zq81-never-logged@", "")
            env = {"BULKOPS_REDIS_PASSWORD": server.password or ""}
            async with runners(bare, n=1, environ=env) as (b,):
                await b.acquire("p1", limit=RateLimit(10.0))
        wrong = SharedLimits(server.url.replace("Zq81", "bad1"), endpoint=ENDPOINT, credentials=CREDS)
        with pytest.raises(ConfigError) as caught:
            await wrong.connect()
    finally:
        server.stop()
    assert events(logs, "bulkops.redis.unavailable") and events(logs, "bulkops.redis.back")
    assert "never-logged" not in repr(logs)
    assert "pw-bad1" not in str(caught.value) and "never-logged" not in str(caught.value)


async def test_snapshot_shows_what_is_shared(redis_server: RedisServer) -> None:
    """`snapshot` lists per project the lowest configured rate, the learned rate, runners and 429s."""
    async with runners(redis_server.url) as (a, b):
        await a.acquire("p1", limit=RateLimit(20.0), global_limit=RateLimit(100.0))
        await b.acquire("p1", limit=RateLimit(8.0))
        await b.learn("p1", rate=6.0, throttled=True)
        await a.learn("p1", throttled=True)
        rows = {row.project_id: row for row in await a.snapshot()}
        await b.aclose()
        after = {row.project_id: row for row in await a.snapshot()}
    row = rows["p1"]
    assert (row.configured, row.learned, row.runners, row.throttled) == (8.0, 6.0, 2, 2)
    assert row.endpoint == ENDPOINT and AK not in repr(row)
    assert rows["*"].configured == 100.0
    assert after["p1"].runners == 1 and after["p1"].configured == 20.0  # a runner that left stops counting


async def test_limits_command_prints_a_table_and_json(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bulkops limits` prints the shared buckets of the runners running now: a table, or JSON."""
    async with runners(redis_server.url, n=1) as (a,):
        await a.acquire("proj-a", limit=RateLimit(12.0))
        await a.learn("proj-a", rate=7.5, throttled=True)
        assert await anyio.to_thread.run_sync(run_limits_command, redis_server.url, False) == 0
        table = capsys.readouterr().out
        assert await anyio.to_thread.run_sync(run_limits_command, redis_server.url, True) == 0
        document = json.loads(capsys.readouterr().out)
    assert ENDPOINT in table and "proj-a" in table and "12.00" in table and "7.50" in table
    (bucket,) = document["buckets"]
    assert bucket["project_id"] == "proj-a" and bucket["learned"] == 7.5 and bucket["throttled"] == 1
    assert bucket["configured"] == 12.0 and bucket["runners"] == 1


def test_limits_command_with_redis_down_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`bulkops limits` against nothing: exit 2 and one error line without the password."""
    assert run_limits_command(f"redis://:pw123456@127.0.0.1:{free_port()}", False) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bulkops: error:") and "pw123456" not in err


async def test_a_transport_closed_under_uvloop_is_redis_trouble_other_runtime_errors_are_not(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvloop's RuntimeError for a write on a closed transport makes the runner pace locally (no row
    fails for it); any other RuntimeError is a bug and is raised."""
    async with runners(redis_server.url, 1) as (a,):

        async def closed(*_args: object) -> None:
            raise RuntimeError(
                "unable to perform operation on <TCPTransport closed=True>; the handler is closed"
            )

        monkeypatch.setattr(a, "_reserve", closed)
        assert await a.acquire("p1", limit=RateLimit(10.0)) >= 0.0
        assert not a.up

        async def bug(*_args: object) -> None:
            raise RuntimeError("something else")

        a._up = True
        monkeypatch.setattr(a, "_reserve", bug)
        with pytest.raises(RuntimeError, match="something else"):
            await a.acquire("p1", limit=RateLimit(10.0))
