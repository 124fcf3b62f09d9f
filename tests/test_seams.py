"""The engine's seams: the local limiter, work source and result sink keep the protocols' contracts."""

from __future__ import annotations

import io

import pytest

from bulkops.clock import FakeClock
from bulkops.engine.limits import LocalLimiter
from bulkops.io.report import ReportWriter
from bulkops.models import Outcome, Reply, Result
from bulkops.options import Options, RateLimit

P = "a" * 32


@pytest.mark.anyio
async def test_local_limiter_admits_at_once_its_buckets_pace_the_work_source() -> None:
    """admit() never waits (the local work source took the slot from the same buckets); those buckets
    pace: after the project's one token, the next is 1/rate away."""
    clock = FakeClock()
    options = Options(endpoint="http://x", rate=RateLimit(10.0, 1), rates={P: RateLimit(10.0, 1)})
    limiter = LocalLimiter(options, clock, {})
    bucket = limiter.bucket_for(P, clock.monotonic())
    assert bucket.wait_time(clock.monotonic()) == 0.0
    bucket.take(clock.monotonic())
    await limiter.admit(P)
    assert clock.monotonic() == 0.0
    assert bucket.wait_time(clock.monotonic()) == pytest.approx(1 / (10.0 * 0.99))


@pytest.mark.anyio
async def test_local_limiter_learns_from_a_429_hint() -> None:
    """A 429 with a hint lowers the project's rate, and the summary's learned rates show it."""
    clock = FakeClock()
    learned: dict[str, float] = {}
    limiter = LocalLimiter(Options(endpoint="http://x", rate=RateLimit(100.0)), clock, learned)
    await limiter.admit(P)
    hint = Reply(429, error_code="APIG.0308", error_msg="policy api over ratelimit,limit:5,time:1 second")
    limiter.learn(P, hint, throttled=True, sent=clock.monotonic(), now=clock.monotonic())
    assert limiter.learned_rates()[P] < 6.0
    assert learned is limiter.learned_rates()


def test_the_report_writer_is_a_result_sink() -> None:
    """ReportWriter takes batches of final records (write_many) and closes: the local ResultSink."""
    out = io.StringIO()
    writer = ReportWriter(out)
    writer.write_many([Result(1, P, "i", Outcome.STOPPED)])
    assert out.getvalue().count("\n") == 1
