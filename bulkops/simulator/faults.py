"""Latency and fault injection, drawn from seeded random sources so that a run repeats.

One draw per request (for the projects faults apply to) picks at most one fault from the cumulative shares;
a retry is a new request and a new draw, so it can succeed. Latency has its own random source, so turning
jitter on does not change which requests fail. With the same seed, the same sequence of requests meets the
same sequence of faults (concurrent clients interleave, so only the statistics repeat for them).

Fault kinds (the names in stats and the request log):

    http_500, http_502, http_503, http_504   an error answer, nothing done
    reset                                    the connection is aborted, no answer at all
    hang                                     no answer for hang_seconds, then a 504 (ends at shutdown)
    applied_then_503                         the stop is applied, the answer is a 503
    outage                                   the first `outage_requests` requests: a 503, nothing done
                                             (not drawn: it comes before the draws, then never again)
"""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Final

from bulkops.simulator.config import SimulatorConfig

KINDS: Final = ("http_500", "http_502", "http_503", "http_504", "reset", "hang", "applied_then_503")
#: The HTTP status each answering fault produces.
FAULT_STATUS: Final = {"http_500": 500, "http_502": 502, "http_503": 503, "http_504": 504, "outage": 503}


class FaultPicker:
    """Draws a fault (or none) per request, and a latency per answer."""

    __slots__ = ("_jitter", "_latency", "_latency_rng", "_outage_left", "_projects", "_rng", "_thresholds")

    def __init__(self, config: SimulatorConfig) -> None:
        self._rng = random.Random(f"bulkops-sim|faults|{config.seed}")
        self._latency_rng = random.Random(f"bulkops-sim|latency|{config.seed}")
        self._latency = config.latency
        self._jitter = config.jitter
        self._projects = config.fault_projects
        self._outage_left = config.outage_requests
        acc, thresholds = 0.0, []
        shares = {f.name: getattr(config.faults, f.name) for f in fields(config.faults)}
        for kind in KINDS:
            if shares[kind] > 0:
                acc += shares[kind]
                thresholds.append((acc, kind))
        self._thresholds: tuple[tuple[float, str], ...] = tuple(thresholds)

    @property
    def active(self) -> bool:
        """True when some fault has a share above zero."""
        return bool(self._thresholds) or self._outage_left > 0

    @property
    def has_latency(self) -> bool:
        """True when answers are delayed at all."""
        return self._latency > 0 or self._jitter > 0

    def draw(self, project_id: str) -> str | None:
        """The fault for this request, or None."""
        if not (self._thresholds or self._outage_left) or (
            self._projects is not None and project_id not in self._projects
        ):
            return None
        if self._outage_left > 0:
            self._outage_left -= 1
            return "outage"
        u = self._rng.random()
        for threshold, kind in self._thresholds:
            if u < threshold:
                return kind
        return None

    def delay(self) -> float:
        """Seconds to wait before answering: latency + uniform(0, jitter)."""
        if self._jitter:
            return self._latency + self._latency_rng.random() * self._jitter
        return self._latency
