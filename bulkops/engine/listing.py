"""Listing a project's DevServer instances: each page of `GET /v1/{project_id}/dev-servers`, paced, retried.

    list_servers(client, project_id, pacing, ...)   the project's servers (dicts), one page after another
    ListPacing                                      the token bucket every page request takes a token from
    ListFailed                                      a project that could not be listed to its end

Decisions:
* Pages are fetched one after another (offset paging has no other safe order) and projects one after
  another by the caller, so the output's order is fixed: a project's servers in creation order, oldest
  first (`sort_key=createTime`, `sort_dir=ASC`, sent explicitly). Instances created meanwhile land at the
  end; one deleted meanwhile shifts the rest left by one, so the page after it may start one server late
  (a server can be missed, never listed twice: ids already listed are dropped).
* One `TokenBucket` (`ratelimit`, paced at 99 % like the engine's) for all requests of the listing: the
  credential's listing calls, not per project.
* What an answer means is `cloud.outcomes.classify_read`, the engine's rules: a 429 is pacing, never a
  failure by count (the bucket is held for its `Retry-After`, else a backoff of at least
  `retry.THROTTLE_FLOOR`), until `throttle_timeout` seconds of nothing but 429s; 5xx, timeouts and
  dropped connections are retried with `retry.Backoff` up to `max_attempts` per page; anything else (401,
  403, 404, another 4xx, an answer that is not a page) fails the project at once.
* The end is the first page shorter than the page size, an empty page, or the offset reaching `total`.
  A full page that brings no server not already listed ends it as a failure (a server that ignores the
  offset would otherwise be paged forever).
* A project that fails raises `ListFailed` after the servers listed before it were yielded: the caller
  decides whether a partial listing is worth keeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from bulkops.clock import Clock, SystemClock
from bulkops.cloud.listing import Page, list_query
from bulkops.cloud.outcomes import Action, classify_read
from bulkops.engine.ratelimit import TokenBucket, paced
from bulkops.engine.retry import THROTTLE_FLOOR, Backoff
from bulkops.errors import BulkOpsError
from bulkops.models import Reply
from bulkops.options import RateLimit, RetryPolicy
from bulkops.validation import is_valid_instance_id

__all__ = ["DEFAULT_PAGE_SIZE", "ListFailed", "ListPacing", "Lister", "list_servers"]

DEFAULT_PAGE_SIZE = 100


class Lister(Protocol):
    """What the listing needs of a client (`cloud.api.DevServerClient` is one)."""

    async def list_page(self, project_id: str, query: tuple[tuple[str, str], ...]) -> Reply:
        """One page request; never raises for HTTP or transport failures."""
        ...


class ListFailed(BulkOpsError):
    """A project whose listing could not be finished; the message is one line, without secrets."""

    def __init__(self, project_id: str, why: str, reply: Reply | None = None) -> None:
        super().__init__(f"project {project_id}: {why}")
        self.project_id = project_id
        self.reply = reply


@dataclass
class ListPacing:
    """The pace of a listing: one token bucket, the retry policy, the throttling timeout and the clock."""

    rate: RateLimit
    retry: RetryPolicy
    throttle_timeout: float = 900.0
    clock: Clock = field(default_factory=SystemClock)
    bucket: TokenBucket = field(init=False)
    backoff: Backoff = field(init=False)

    def __post_init__(self) -> None:
        self.bucket = TokenBucket(paced(self.rate), self.clock.monotonic())
        self.backoff = Backoff(self.retry)

    async def token(self) -> None:
        """Wait for the bucket's next token and take it."""
        clock = self.clock
        while (wait := self.bucket.wait_time(clock.monotonic())) > 0:
            await clock.sleep(wait)
        self.bucket.take(clock.monotonic())


def _reason(reply: Reply) -> str:
    """The answer, for an error line: HTTP status, error code, message."""
    parts = [f"HTTP {reply.http_status}" if reply.http_status is not None else "no answer"]
    parts += [p for p in (reply.error_code, reply.error_msg) if p]
    return " ".join(parts[:2]) + (f": {parts[2]}" if len(parts) > 2 else "")


async def list_servers(
    client: Lister,
    project_id: str,
    pacing: ListPacing,
    *,
    owner: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> AsyncIterator[dict[str, Any]]:
    """Every server of `project_id` (the API's objects), oldest first; `ListFailed` when a page cannot be had.

    `owner` is the API's filter (a user id). ValueError before anything is sent for a query value the API
    does not take.
    """
    list_query(limit=page_size, offset=0, owner=owner)  # checks the values once, before any request
    clock = pacing.clock
    seen: set[str] = set()
    offset = 0
    failures = 0
    throttled_since: float | None = None
    throttles = 0
    while True:
        await pacing.token()
        query = list_query(limit=page_size, offset=offset, owner=owner, sort_key="createTime", sort_dir="ASC")
        reply = await client.list_page(project_id, query)
        if isinstance(reply, Page):
            failures, throttles, throttled_since = 0, 0, None
            servers = reply.servers
            fresh = [s for s in servers if _new(s, seen)]
            for server in fresh:
                yield server
            offset += len(servers)
            total = reply.total
            if len(servers) < page_size or (total is not None and offset >= total):
                return
            if not fresh:
                raise ListFailed(project_id, f"the page at offset {offset - len(servers)} repeats servers")
            continue
        verdict = classify_read(reply)
        now = clock.monotonic()
        if verdict is not None and verdict.action is Action.THROTTLED:
            throttled_since = now if throttled_since is None else throttled_since
            if now - throttled_since >= pacing.throttle_timeout:
                raise ListFailed(
                    project_id, f"throttled for {pacing.throttle_timeout:g}s: {_reason(reply)}", reply
                )
            throttles += 1
            hold = max(THROTTLE_FLOOR, pacing.backoff.delay(throttles, reply.retry_after))
            pacing.bucket.hold(now, now + hold)
            continue
        if verdict is not None and verdict.action is Action.RETRY:
            failures += 1
            if failures < pacing.retry.max_attempts:
                await clock.sleep(pacing.backoff.delay(failures, reply.retry_after))
                continue
            raise ListFailed(project_id, f"{_reason(reply)} (after {failures} attempts)", reply)
        raise ListFailed(project_id, _reason(reply), reply)


def _new(server: dict[str, Any], seen: set[str]) -> bool:
    """True the first time a server with a valid id is seen."""
    instance_id = server.get("id")
    if not isinstance(instance_id, str) or not is_valid_instance_id(instance_id) or instance_id in seen:
        return False
    seen.add(instance_id)
    return True
