"""The engine: one anyio task group that turns targets into final results, bounded at every stage.

A package of rooms, one job each (docs/design.md draws how they connect):

    jobs       the job value, the `Client` protocol, the run's flow signals
    seams      the three seams as protocols: `Limiter`, `WorkSource`, `ResultSink`
    policy     pure: what follows an answer (final, retry at T, poll at T, throttled)
    records    final records built and handed to the results stream
    limits     the local limiter: per-project token buckets, the global bucket, learning from 429s
    admission  the local work source: reader -> scheduler / overflow
    worker     one attempt and its verdict, the policy's decision applied
    dispatch   the dispatcher and the worker loop
    run        `stop_instances`, `Run`, the task-group wiring and the grace period

Layers point down: run -> dispatch -> worker -> (admission, limits, records, policy) -> seams, jobs.
The engine imports the parts below it (`scheduler`, `adaptive`, `ratelimit`, `hints`, `retry`,
`outcomes`, `overflow`, `feed`, `models`, `options`, `clock`, `summary`, `redact`, `validation`,
`report`), never `runner` or the commands.
"""

from __future__ import annotations

from bulkops.engine.jobs import Client
from bulkops.engine.run import Run, stop_instances
from bulkops.engine.seams import Limiter, ResultSink, WorkSource

__all__ = ["Client", "Limiter", "ResultSink", "Run", "WorkSource", "stop_instances"]
