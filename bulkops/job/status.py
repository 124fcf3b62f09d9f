"""`bulkops job status` and `bulkops job cancel`: read a job's progress, or stop it handing out rows.

    await job_status(client, name)  -> dict (rows final, queued, held per worker, per-project rate,
                                       workers alive), or None when there is no such job
    await cancel_job(client, name)  -> the state before (None: no such job)

Read-only but for the cancel; a few pipelined round trips; not atomic (workers move the figures between
two reads, which a display can live with).
"""

from __future__ import annotations

from typing import Any

from bulkops.job.keys import GROUP, JobKeys
from bulkops.job.meta import CANCELLED, RUNNING
from bulkops.redis.naming import PREFIX, endpoint_name
from bulkops.redis.snapshot import read_snapshot


async def job_status(client: Any, name: str) -> dict[str, Any] | None:
    k = JobKeys(name)
    meta = await client.hgetall(k.meta)
    if not meta:
        return None
    projects = sorted(await client.smembers(k.projects))
    async with client.pipeline(transaction=False) as pipe:
        pipe.hlen(k.final)
        pipe.xlen(k.finals)
        pipe.zrange(k.workers, 0, -1)
        for p in projects:
            pipe.xlen(k.stream(p))
            pipe.xpending(k.stream(p), GROUP)
        got = await pipe.execute(raise_on_error=False)
    final, unreported, workers = int(got[0]), int(got[1]), list(got[2])
    alive = []
    if workers:
        async with client.pipeline(transaction=False) as pipe:
            for w in workers:
                pipe.exists(k.heartbeat(w))
            beats = await pipe.execute()
        alive = [w for w, b in zip(workers, beats, strict=True) if int(b)]
    held: dict[str, int] = {}
    per_project = {}
    rates = await _rates(client, meta)
    for i, p in enumerate(projects):
        length, pending = got[3 + 2 * i], got[4 + 2 * i]
        in_hand = int(pending["pending"]) if isinstance(pending, dict) else 0
        if isinstance(pending, dict):
            for c in pending.get("consumers") or []:
                held[c["name"]] = held.get(c["name"], 0) + int(c["pending"])
        queued = max(0, int(length) - in_hand) if isinstance(length, int) else 0
        per_project[p] = {"queued": queued, "in_flight": in_hand, "rate": rates.get(p)}
    return {
        "job": name,
        "state": meta.get("state", RUNNING),
        "fed": meta.get("fed") == "1",
        "operation": meta.get("operation"),
        "created": meta.get("created"),
        "ended": meta.get("ended"),
        "rows_final": final,
        "finals_not_in_report": unreported,
        "queued": sum(v["queued"] for v in per_project.values()),
        "in_flight": sum(v["in_flight"] for v in per_project.values()),
        "in_flight_per_worker": dict(sorted(held.items())),
        "workers_alive": sorted(alive),
        "projects": per_project,
    }


async def _rates(client: Any, meta: dict[str, str]) -> dict[str, float | None]:
    """The shared rate each project paces at now (bulkops limits' figure), by the job's scope."""
    scope = f"{PREFIX}{endpoint_name(meta.get('endpoint', ''))}:{meta.get('credential', '')}"
    try:
        rows = await read_snapshot(client, scope=scope)
    except Exception:  # a display: no rates rather than no status
        return {}
    return {r.project_id: r.learned or r.configured for r in rows}


async def cancel_job(client: Any, name: str) -> str | None:
    """Stop the job handing out rows (state `cancelled`); the previous state, None if no such job."""
    k = JobKeys(name)
    state: str | None = await client.hget(k.meta, "state")
    if state == RUNNING:
        await client.hset(k.meta, "state", CANCELLED)
    return state


def render(status: dict[str, Any]) -> str:
    """The human form of `job_status`."""
    lines = [
        f"job {status['job']}: {status['state']}"
        + ("" if status["fed"] else " (still publishing rows)")
        + f"; {status['rows_final']} rows final, {status['queued']} queued, {status['in_flight']} in flight",
        f"workers alive: {len(status['workers_alive'])}",
    ]
    for w in status["workers_alive"]:
        lines.append(f"  {w}: {status['in_flight_per_worker'].get(w, 0)} in flight")
    for w, n in status["in_flight_per_worker"].items():
        if w not in status["workers_alive"]:
            lines.append(f"  {w} (dead: its rows are taken over): {n} held")
    lines.append(f"{'project':<34} {'queued':>7} {'in flight':>9} {'rate/s':>8}")
    for p, v in status["projects"].items():
        rate = "-" if v["rate"] is None else f"{v['rate']:.2f}"
        lines.append(f"{p:<34} {v['queued']:>7} {v['in_flight']:>9} {rate:>8}")
    return "\n".join(lines)
