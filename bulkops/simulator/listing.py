"""The simulator's listing, `GET /v1/{project_id}/dev-servers`: pages of a project's instances.

The answer has the official SDK's shape (`ListDevServersResponse`): `{"current": page, "data": [server, ...],
"pages": n, "size": limit, "total": matches}`, each server the object a show returns (`answers.instance_body`,
with the instance's live status). The query (`ListDevServersRequest`):

    limit      1-1024, default 10 (0 is taken as the default: what the real API does with it is unknown)
    offset     0-2147483647, default 0: servers skipped before the page
    sort_key   createTime (default) or updateTime;  sort_dir  ASC (default) or DESC; ties by id
    owner      only the instances of that user (the API's admin view)

A bad value is a 400 `ModelArts.0101` "Invalid parameter ..." (SIMULATOR-INVENTED: the code is a guess).
A project without instances lists nothing (200, total 0).

Owners. The DevServer object carries no owner, so the simulator derives one per instance from its id: one
of `OWNERS` (three fixed 32-hex user ids), so a filter by owner keeps about a third of a project.

Cost. The creation order of a project is fixed, so it is sorted once and cached (a list of ids per project
listed); an `updateTime` order depends on the live statuses and is sorted per request. Fine for the fleets
tests and rehearsals use (thousands of instances per project); a million-instance project costs seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Final

from bulkops.simulator.answers import created_ms, error_body, instance_body
from bulkops.simulator.inventory import sha
from bulkops.simulator.state import InstanceStore, unit

#: The user ids instances belong to (`--owner` filters by them).
OWNERS: Final = tuple(sha(f"bulkops-sim|owner|{i}")[:32] for i in range(3))
BAD_PARAMETER: Final = "ModelArts.0101"
_DEFAULT_LIMIT = 10
_MAX_LIMIT = 1024


def owner_of(instance_id: str) -> str:
    """The user id an instance belongs to, stable per id."""
    return OWNERS[int(unit(f"{instance_id}|owner") * len(OWNERS))]


def _bad(message: str) -> tuple[int, bytes, str]:
    return 400, error_body(BAD_PARAMETER, f"Invalid parameter: {message}"), BAD_PARAMETER


def _int(query: Mapping[str, str], name: str, default: int, top: int) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or int(text) > top:
        return None
    return int(text)


class Lister:
    """Pages of a project's instances, from the store's live statuses."""

    __slots__ = ("_by_creation", "_store")

    def __init__(self, store: InstanceStore) -> None:
        self._store = store
        self._by_creation: dict[str, list[str]] = {}

    def _created_order(self, project_id: str) -> list[str]:
        ids = self._by_creation.get(project_id)
        if ids is None:
            ids = [i for i, _ in self._store.inventory.iter_instances(project_id)]
            ids.sort(key=lambda i: (created_ms(i), i))
            self._by_creation[project_id] = ids
        return ids

    def page(self, project_id: str, query: Mapping[str, str]) -> tuple[int, bytes, str | None]:
        """(HTTP status, body, error_code) of one listing request."""
        limit = _int(query, "limit", _DEFAULT_LIMIT, _MAX_LIMIT)
        offset = _int(query, "offset", 0, 2**31 - 1)
        if limit is None or offset is None:
            return _bad(f"limit must be 0 to {_MAX_LIMIT} and offset 0 to 2147483647")
        limit = limit or _DEFAULT_LIMIT
        sort_key = query.get("sort_key") or "createTime"
        sort_dir = query.get("sort_dir") or "ASC"
        if sort_key not in ("createTime", "updateTime") or sort_dir not in ("ASC", "DESC"):
            return _bad("sort_key is createTime or updateTime, sort_dir ASC or DESC")
        owner = query.get("owner")
        ids = self._created_order(project_id)
        if owner:
            ids = [i for i in ids if owner_of(i) == owner]
        status = self._store.status
        if sort_key == "updateTime":
            ids = sorted(ids, key=lambda i: ((status(project_id, i) or ("", 0))[1], i))
        if sort_dir == "DESC":
            ids = ids[::-1]
        servers = []
        for instance_id in ids[offset : offset + limit]:
            now = status(project_id, instance_id)
            if now is not None:
                servers.append(instance_body(instance_id, *now))
        head = json.dumps({"current": offset // limit + 1}).encode()[:-1]
        tail = json.dumps({"pages": math.ceil(len(ids) / limit), "size": limit, "total": len(ids)}).encode()
        return 200, head + b',"data":[' + b",".join(servers) + b"]," + tail[1:], None
