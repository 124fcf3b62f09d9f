"""What is shared now: per scope and project, the configured and learned rates, the runners, recent 429s.

    read_snapshot(client, scope=None)   -> [SharedProject, ...]   (every scope when `scope` is None)

Read-only, a few pipelined round trips, on Redis time; what `bulkops limits` prints. Not atomic: runners
may move the figures between two reads, which a display can live with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bulkops.redis.naming import SCOPES_KEY, Keys

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: The credential-wide bucket's name in a snapshot.
GLOBAL = "*"
#: Seconds over which 429s count as recent (the `RECENT_SPAN` of `limits`).
RECENT = 300.0
#: Seconds after which a scope or project not used is not listed (the keys' TTL).
STALE = 300.0


@dataclass(frozen=True, slots=True)
class SharedProject:
    """One shared bucket as Redis holds it now."""

    endpoint: str
    """The endpoint URL the runners named ("" if its record expired)."""
    credential: str
    """The credential's name (the start of its keyed hash), never the credential."""
    project_id: str
    """The project, or "*" for the credential's global bucket."""
    configured: float | None
    """The lowest rate a live runner was configured with (the one used), None if none was."""
    learned: float | None
    """The rate runners learned from the gateway, None if none."""
    runners: int
    """Live runners configured for this bucket."""
    throttled: int
    """429s counted in the last `RECENT` seconds."""
    held_for: float
    """Seconds the bucket still sends nothing (a Retry-After), 0.0 if not held."""

    def as_dict(self) -> dict[str, Any]:
        """The row as plain JSON-able values."""
        return asdict(self)


def _float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


async def read_snapshot(
    client: Redis, *, scope: str | None = None, runner_ttl: float = 5.0
) -> list[SharedProject]:
    """Every shared bucket (of `scope` only, when given), sorted by endpoint, credential, project."""
    seconds, micros = await client.time()
    now = seconds + micros / 1e6
    scopes: list[str] = [scope] if scope is not None else []
    if scope is None:
        scopes = [str(s) for s in await client.zrangebyscore(SCOPES_KEY, now - STALE, "+inf")]
    rows: list[SharedProject] = []
    for name in scopes:
        keys = Keys(name)
        async with client.pipeline(transaction=False) as pipe:
            pipe.hget(keys.meta, "endpoint")
            pipe.zrangebyscore(keys.runners, now - runner_ttl, "+inf")
            pipe.zrangebyscore(keys.projects, now - STALE, "+inf")
            endpoint, alive, projects = await pipe.execute()
        live = set(alive)
        buckets = [p for p in sorted(projects) if p != GLOBAL] + [GLOBAL]
        async with client.pipeline(transaction=False) as pipe:
            for project_id in buckets:
                pipe.hgetall(keys.project(project_id))
                pipe.zrange(keys.configured(project_id), 0, -1, withscores=True)
            answers = await pipe.execute()
        for i, project_id in enumerate(buckets):
            state: dict[str, str] = answers[2 * i]
            configured = [(member, rate) for member, rate in answers[2 * i + 1] if member in live]
            if project_id == GLOBAL and not state and not configured:
                continue
            since = _float(state.get("t429_since"))
            recent = since is not None and now - since <= RECENT
            hold = _float(state.get("hold"))
            rows.append(
                SharedProject(
                    endpoint=endpoint or "",
                    credential=keys.credential[:12],
                    project_id=project_id,
                    configured=min((rate for _, rate in configured), default=None),
                    learned=_float(state.get("learned")),
                    runners=len(configured) if project_id != GLOBAL or configured else len(live),
                    throttled=int(state.get("t429", 0)) if recent else 0,
                    held_for=max(0.0, hold - now) if hold is not None else 0.0,
                )
            )
    return sorted(rows, key=lambda r: (r.endpoint, r.credential, r.project_id == GLOBAL, r.project_id))
