"""Gateway-style throttling: token buckets per project and per credential, on an injectable clock.

A `Limit` of N per second (or minute) is a bucket of N tokens refilled at N per window, full at start: N
requests pass at once, then one per window/N. A request needs a token from its project's bucket and, when
`credential_limit` is set, from its credential's bucket (shared by every project that AK or token touches);
tokens are taken only when both have one, so a refused request costs nothing.

A refusal is a 429 `APIG.0308` whose message names the policy, limit and window, like the real gateway's:
`policy api over ratelimit,limit:10,time:1 second` for a project's limit (the gateway's per-API policy,
which the path's project makes per project here), and `policy user ...` for a credential's (the gateway's
limit per calling user or credential, shared by every project it touches). With `throttle_hints` off, the
message is bare ("The throttling threshold has been reached"), as some gateway policies answer. The
message bodies are rendered once per limit. `retry_after` is the whole number of seconds until the
refusing bucket holds a token (>= 1).

`limit_schedule` changes every limit mid-run: from `at` seconds after the first request, each limit is
`factor` times its configured size (rate and burst), as when a quota is cut or raised under a running job.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from bulkops.simulator.answers import THROTTLED, error_body, throttle_message
from bulkops.simulator.config import Limit, SimulatorConfig


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was throttled: the 429 body, the policy name and seconds until a token is free."""

    body: bytes
    policy: str
    retry_after: int


class TokenBucket:
    """`capacity` tokens, refilled continuously at `rate` per second."""

    __slots__ = ("body", "capacity", "rate", "stamp", "tokens")

    def __init__(self, limit: Limit, now: float, body: bytes) -> None:
        self.capacity = float(limit.limit)
        self.rate = limit.limit / limit.seconds
        self.tokens = self.capacity
        self.stamp = now
        self.body = body

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0.0 when one is there now); refills as a side effect."""
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


def _whole(seconds: float) -> int:
    """Whole seconds to wait, rounded up (ignoring float noise), at least 1."""
    return max(1, math.ceil(seconds - 1e-6))


class Throttle:
    """Admits or refuses requests, one bucket per project and optionally one per credential."""

    __slots__ = (
        "_bodies",
        "_by_credential",
        "_by_project",
        "_clock",
        "_config",
        "_factor",
        "_schedule",
        "_started",
        "_unlimited",
    )

    def __init__(self, config: SimulatorConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._by_project: dict[str, TokenBucket | None] = {}
        self._by_credential: dict[str, TokenBucket] = {}
        self._bodies: dict[tuple[str, int, str], bytes] = {}
        self._schedule = sorted(config.limit_schedule)
        self._started: float | None = None
        self._factor = 1.0
        self._unlimited = (
            config.project_limit is None
            and not any(config.project_limits.values())
            and config.credential_limit is None
        )

    def _body(self, policy: str, limit: int, window: str) -> bytes:
        body = self._bodies.get((policy, limit, window))
        if body is None:
            msg = (
                throttle_message(policy, limit, window)
                if self._config.throttle_hints
                else "The throttling threshold has been reached"
            )
            body = self._bodies[(policy, limit, window)] = error_body(THROTTLED, msg)
        return body

    def _bucket(self, policy: str, limit: Limit, now: float) -> TokenBucket:
        bucket = TokenBucket(limit, now, self._body(policy, limit.limit, limit.window))
        if self._factor != 1.0:
            self._rescale(bucket, policy, limit, now)
        return bucket

    def _rescale(self, bucket: TokenBucket, policy: str, limit: Limit, now: float) -> None:
        scaled = max(1, round(limit.limit * self._factor))
        bucket.wait(now)
        bucket.capacity = float(scaled)
        bucket.rate = scaled / limit.seconds
        bucket.tokens = min(bucket.tokens, bucket.capacity)
        bucket.body = self._body(policy, scaled, limit.window)

    def _follow_schedule(self, now: float) -> None:
        """Apply the factor of `limit_schedule` that holds at `now` to every bucket."""
        if self._started is None:
            self._started = now
        factor = 1.0
        for at, f in self._schedule:
            if now - self._started >= at:
                factor = f
        if factor == self._factor:
            return
        self._factor = factor
        config = self._config
        for project_id, bucket in self._by_project.items():
            limit = config.limit_for(project_id)
            if bucket is not None and limit is not None:
                self._rescale(bucket, "api", limit, now)
        if config.credential_limit is not None:
            for bucket in self._by_credential.values():
                self._rescale(bucket, "user", config.credential_limit, now)

    def admit(self, project_id: str, credential: str) -> Refusal | None:
        """None when the request may pass (its tokens are taken), else why not."""
        if self._unlimited:
            return None
        now = self._clock()
        if self._schedule:
            self._follow_schedule(now)
        try:
            project = self._by_project[project_id]
        except KeyError:
            limit = self._config.limit_for(project_id)
            project = self._by_project[project_id] = (
                None if limit is None else self._bucket("api", limit, now)
            )
        shared: TokenBucket | None = None
        if self._config.credential_limit is not None:
            shared = self._by_credential.get(credential)
            if shared is None:
                shared = self._by_credential[credential] = self._bucket(
                    "user", self._config.credential_limit, now
                )
        if project is not None:
            wait = project.wait(now)
            if wait > 0:
                return Refusal(project.body, "project", _whole(wait))
        if shared is not None:
            wait = shared.wait(now)
            if wait > 0:
                return Refusal(shared.body, "credential", _whole(wait))
            shared.tokens -= 1.0
        if project is not None:
            project.tokens -= 1.0
        return None
