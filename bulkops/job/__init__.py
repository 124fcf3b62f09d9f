"""One job spread over several hosts, on Redis Streams (issue 15).

    coordinator  `bulkops stop INPUT --redis URL --job NAME`: publishes the job and its rows, works on
                 rows itself, collects the finals into the one report
    feed         the coordinator's feeder: one stream per (job, project), bounded, the rest on disk
    worker       `bulkops worker`: the engine over the job's streams, finals written to Redis, heartbeat
    source       the engine's work source over the streams (claims after a shared token; dead workers'
                 rows taken over; poisoned rows) and its limiter
    status       `bulkops job status` and `bulkops job cancel`
    meta         what the job publishes (options, endpoint, credential's keyed hash) and a joiner's checks
    keys         key layout; scripts: the Lua scripts (FINAL, REAP, IDLE)

redis-py is imported only through `bulkops.redis.client`, when called. Design: docs/design.md, "A job
over several hosts (Redis Streams)".
"""
