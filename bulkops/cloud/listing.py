"""The listing call, `GET /v1/{project_id}/dev-servers`: its query and its answer, as the official SDK says.

    list_query(limit=, offset=, owner=, sort_key=, sort_dir=)   the query pairs, checked, in the SDK's order
    Page                                                       a 200 answer's `Reply` and its JSON object
    to_page(reply, body)                                       a parsed answer made a `Page` when it is one

From `huaweicloudsdkmodelarts` 3.1.x (`ListDevServersRequest`, `ListDevServersResponse`, `ServerResponse`):
the query is `owner` (1-64 of a-z, 0-9, '-'), `sort_dir` (ASC, the default, or DESC), `sort_key`
(`createTime`, the default, or `updateTime`), `limit` (0-1024, default 10) and `offset` (0-2147483647); the
answer is `{"current": page, "data": [server, ...], "pages": n, "size": limit, "total": matches}`, each
server the object a show returns (`id`, `name`, `status`, `flavor`, `create_at`, `update_at`, ...). There
is no status filter in the API: `bulkops list --status` filters what comes back.

The HTTP round trip is `api.DevServerClient.list_page` (aiohttp stays in `api`); this module holds only
values, so that the client stays small and the simulator's tests can share the rules.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from bulkops.models import BAD_RESPONSE, Reply

__all__ = ["MAX_LIMIT", "SORT_DIRS", "SORT_KEYS", "Page", "list_query", "to_page"]

MAX_LIMIT = 1024
SORT_KEYS = ("createTime", "updateTime")
SORT_DIRS = ("ASC", "DESC")
_OWNER_RE = re.compile(r"^[a-z0-9-]{1,64}$")


def list_query(
    *,
    limit: int,
    offset: int,
    owner: str | None = None,
    sort_key: str | None = None,
    sort_dir: str | None = None,
) -> tuple[tuple[str, str], ...]:
    """The query pairs of one page, sorted by name as the SDK sends them (and as the signature's canonical
    query orders them); ValueError (one line) for a value the API refuses."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"the page size must be 1 to {MAX_LIMIT}, got {limit}")
    if not 0 <= offset < 2**31:
        raise ValueError(f"the offset must be 0 to 2147483647, got {offset}")
    if owner is not None and not _OWNER_RE.match(owner):
        raise ValueError("--owner must be 1 to 64 characters of a-z, 0-9 and '-' (a user id)")
    if sort_key is not None and sort_key not in SORT_KEYS:
        raise ValueError(f"the sort key must be one of {', '.join(SORT_KEYS)}")
    if sort_dir is not None and sort_dir not in SORT_DIRS:
        raise ValueError(f"the sort direction must be one of {', '.join(SORT_DIRS)}")
    pairs = (("owner", owner), ("sort_dir", sort_dir), ("sort_key", sort_key))
    return (("limit", str(limit)), ("offset", str(offset)), *((k, v) for k, v in pairs if v))


@dataclasses.dataclass(slots=True, unsafe_hash=True)
class Page(Reply):
    """A 200 answer to a listing: the `Reply` fields, and `body`, the page's JSON object."""

    body: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False, compare=False)

    @property
    def servers(self) -> list[dict[str, Any]]:
        """The page's servers (`data`): the objects, those that are not dropped."""
        data = self.body.get("data")
        return [s for s in data if isinstance(s, dict)] if isinstance(data, list) else []

    @property
    def total(self) -> int | None:
        """How many servers match the query in all (`total`), when the answer says."""
        total = self.body.get("total")
        return total if isinstance(total, int) and not isinstance(total, bool) else None


def to_page(reply: Reply, body: bytes) -> Reply:
    """`reply` (a parsed answer) as a `Page` when it is a 200 whose body is a JSON object with a `data`
    list; a 200 with anything else is `bulkops.bad_response`; any other answer is returned as it is."""
    if reply.http_status != 200 or reply.error_code is not None:
        return reply
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        return Reply(
            200,
            error_code=BAD_RESPONSE,
            error_msg="HTTP 200 with a body that is not a page of servers",
            request_id=reply.request_id,
        )
    return Page(200, request_id=reply.request_id, retry_after=reply.retry_after, body=data)
