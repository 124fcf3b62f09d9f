"""Limits shared between runners through Redis (`bulkops stop --redis URL`, `bulkops limits`).

    limiter     SharedLimiter: the engine's Limiter over Redis (`share_limits`, `stop_instances(limiter=)`)
    limits      SharedLimits: acquire send slots, learn from the gateway, heartbeat; the local fallback
    scripts     the Lua scripts (GCRA reservation, learning, heartbeat), one round trip each
    gcra        the algorithm in Python (the fallback's buckets run it; the scripts mirror it)
    fallback    what a runner remembers of the shared state, and its local buckets while Redis is away
    snapshot    what is shared now, for `bulkops limits`
    client      the one boundary to redis-py (imported lazily: `import bulkops` never loads it)
    naming      key layout, the credential's keyed hash, the URL without its password

Nothing in bulkops imports this package unless Redis is asked for. Design: docs/design.md, "Shared limits
(Redis)".
"""

from __future__ import annotations

from bulkops.redis.limiter import SharedLimiter, open_shared_limits, share_limits
from bulkops.redis.limits import SharedLimits
from bulkops.redis.snapshot import SharedProject, read_snapshot

__all__ = [
    "SharedLimiter",
    "SharedLimits",
    "SharedProject",
    "open_shared_limits",
    "read_snapshot",
    "share_limits",
]
