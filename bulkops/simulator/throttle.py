"""Gateway-style throttling: token buckets per project and per credential, on an injectable clock.

A `Limit` of N per second (or minute) is a bucket of N tokens refilled at N per window, full at start: N
requests pass at once, then one per window/N. A request needs a token from its project's bucket and, when
`credential_limit` is set, from its credential's bucket (shared by every project that AK or token touches);
tokens are taken only when both have one, so a refused request costs nothing.

A refusal is a 429 `APIG.0308` whose message names the policy, limit and window, like the real gateway's:
`policy user over ratelimit,limit:10,time:1 second` for a project's limit, and `policy app ...` for a
credential's (the gateway's name for a limit per calling credential). The message bodies are rendered once
per limit. `retry_after` is the whole number of seconds until the refusing bucket holds a token (>= 1).
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

    __slots__ = ("_bodies", "_by_credential", "_by_project", "_clock", "_config", "_unlimited")

    def __init__(self, config: SimulatorConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._by_project: dict[str, TokenBucket | None] = {}
        self._by_credential: dict[str, TokenBucket] = {}
        self._bodies: dict[tuple[str, Limit], bytes] = {}
        self._unlimited = (
            config.project_limit is None
            and not any(config.project_limits.values())
            and config.credential_limit is None
        )

    def _bucket(self, policy: str, limit: Limit, now: float) -> TokenBucket:
        body = self._bodies.get((policy, limit))
        if body is None:
            msg = throttle_message(policy, limit.limit, limit.window)
            body = self._bodies[(policy, limit)] = error_body(THROTTLED, msg)
        return TokenBucket(limit, now, body)

    def admit(self, project_id: str, credential: str) -> Refusal | None:
        """None when the request may pass (its tokens are taken), else why not."""
        if self._unlimited:
            return None
        now = self._clock()
        try:
            project = self._by_project[project_id]
        except KeyError:
            limit = self._config.limit_for(project_id)
            project = self._by_project[project_id] = (
                None if limit is None else self._bucket("user", limit, now)
            )
        shared: TokenBucket | None = None
        if self._config.credential_limit is not None:
            shared = self._by_credential.get(credential)
            if shared is None:
                shared = self._by_credential[credential] = self._bucket(
                    "app", self._config.credential_limit, now
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
