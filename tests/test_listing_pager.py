"""`engine.listing.list_servers` against a scripted client on a fake clock: paging, 429s, 5xx, failures."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import pytest

from bulkops.clock import FakeClock
from bulkops.cloud.listing import Page
from bulkops.engine.listing import ListFailed, ListPacing, list_servers
from bulkops.models import CONNECTION_ERROR, Reply
from bulkops.options import RateLimit, RetryPolicy

pytestmark = pytest.mark.anyio

PROJECT = "0123456789abcdef0123456789abcdef"


def sid(n: int) -> str:
    """A valid instance id numbered n."""
    return f"00000000-0000-4000-8000-{n:012x}"


def page(ids: Iterable[int], total: int | None) -> Page:
    """A 200 page holding servers with these numbers."""
    body: dict[str, Any] = {"data": [{"id": sid(n), "name": f"s{n}", "status": "RUNNING"} for n in ids]}
    if total is not None:
        body["total"] = total
    return Page(200, body=body)


class Scripted:
    """A client that answers each page request with the next scripted reply, and records the queries."""

    def __init__(self, clock: FakeClock, replies: list[Reply]) -> None:
        self.clock = clock
        self.replies = replies
        self.sent: list[tuple[float, dict[str, str]]] = []

    async def list_page(self, project_id: str, query: tuple[tuple[str, str], ...]) -> Reply:
        self.sent.append((self.clock.monotonic(), dict(query)))
        return self.replies.pop(0)


async def collect(client: Scripted, clock: FakeClock, **kw: Any) -> list[str]:
    """The ids the pager yields, with a 10/s bucket, 3 attempts a page and a 60 s throttle timeout;
    a ListFailed is raised outside the autojump's task group (not inside an exception group)."""
    pacing = ListPacing(RateLimit(10.0), RetryPolicy(max_attempts=3), throttle_timeout=60.0, clock=clock)
    ids: list[str] = []
    failed: ListFailed | None = None
    async with clock.autojumping():
        try:
            async for server in list_servers(client, PROJECT, pacing, page_size=2, **kw):
                ids.append(server["id"])
        except ListFailed as exc:
            failed = exc
    if failed is not None:
        raise failed
    return ids


async def test_pages_until_the_total_and_sends_the_sdk_query() -> None:
    """Three pages of two: offsets 0, 2, 4 with sort by createTime ASC, and every server once, in order."""
    clock = FakeClock()
    client = Scripted(clock, [page([1, 2], 5), page([3, 4], 5), page([5], 5)])
    assert await collect(client, clock, owner="user-1") == [sid(n) for n in range(1, 6)]
    assert [list(q.items()) for _, q in client.sent] == [
        [
            ("limit", "2"),
            ("offset", str(o)),
            ("owner", "user-1"),
            ("sort_dir", "ASC"),
            ("sort_key", "createTime"),
        ]
        for o in (0, 2, 4)
    ]


async def test_a_full_last_page_ends_at_the_total_and_an_empty_page_ends_without_one() -> None:
    """No request past `total`; without a total, an empty page is the end."""
    clock = FakeClock()
    client = Scripted(clock, [page([1, 2], 2)])
    assert await collect(client, clock) == [sid(1), sid(2)]
    client = Scripted(clock, [page([1, 2], None), page([], None)])
    assert await collect(client, clock) == [sid(1), sid(2)]
    assert len(client.sent) == 2


async def test_a_server_seen_on_an_earlier_page_is_listed_once() -> None:
    """A server that shifts onto the next page (an instance created meanwhile) is not listed twice."""
    clock = FakeClock()
    client = Scripted(clock, [page([1, 2], 5), page([2, 3], 5), page([4, 5], 5)])
    assert await collect(client, clock) == [sid(n) for n in (1, 2, 3, 4, 5)]


async def test_a_page_that_repeats_itself_fails_instead_of_paging_forever() -> None:
    """A server that ignores the offset (the same full page again) ends the project with ListFailed."""
    clock = FakeClock()
    client = Scripted(clock, [page([1, 2], None), page([1, 2], None), page([1, 2], None)])
    with pytest.raises(ListFailed, match="repeats servers"):
        await collect(client, clock)


async def test_a_429_holds_the_bucket_for_retry_after_and_costs_no_attempt() -> None:
    """Four 429s with Retry-After 5 (more than --max-attempts 3): each waits 5 s, then the page comes."""
    clock = FakeClock()
    throttled = Reply(429, error_code="APIG.0308", error_msg="throttled", retry_after=5.0)
    client = Scripted(clock, [throttled] * 4 + [page([1], 1)])
    assert await collect(client, clock) == [sid(1)]
    times = [t for t, _ in client.sent]
    assert all(later - earlier >= 5.0 for earlier, later in itertools.pairwise(times))


async def test_429s_without_a_break_for_the_throttle_timeout_fail_the_project() -> None:
    """Only 429s for 60 s: ListFailed naming the throttling, not an endless wait."""
    clock = FakeClock()
    throttled = Reply(429, error_code="APIG.0308", error_msg="throttled", retry_after=10.0)
    client = Scripted(clock, [throttled] * 20)
    with pytest.raises(ListFailed, match="throttled for 60s"):
        await collect(client, clock)
    assert clock.monotonic() >= 60.0


async def test_a_5xx_is_retried_and_max_attempts_ends_it() -> None:
    """503 then a page: listed. Three connection errors (--max-attempts 3): ListFailed after 3 attempts."""
    clock = FakeClock()
    client = Scripted(clock, [Reply(503, error_code="APIGW.0201"), page([1], 1)])
    assert await collect(client, clock) == [sid(1)]
    client = Scripted(clock, [Reply(None, error_code=CONNECTION_ERROR, error_msg="reset")] * 3)
    with pytest.raises(ListFailed, match="after 3 attempts") as info:
        await collect(client, clock)
    assert len(client.sent) == 3 and info.value.project_id == PROJECT


async def test_a_403_fails_at_once_with_the_apis_reason() -> None:
    """A 403 is final: one request, and the error names the status, code and message."""
    clock = FakeClock()
    client = Scripted(clock, [Reply(403, error_code="APIGW.0302", error_msg="not authorized")])
    with pytest.raises(ListFailed) as info:
        await collect(client, clock)
    assert str(info.value) == f"project {PROJECT}: HTTP 403 APIGW.0302: not authorized"
    assert len(client.sent) == 1


async def test_pages_are_paced_by_the_rate() -> None:
    """With --rate 10 and a 10-token bucket, 12 pages take more than 0.1 s of (fake) time after the burst."""
    clock = FakeClock()
    client = Scripted(clock, [page([2 * i, 2 * i + 1], 24) for i in range(12)])
    assert len(await collect(client, clock)) == 24
    assert client.sent[-1][0] >= 0.19
