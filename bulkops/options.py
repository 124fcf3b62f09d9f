"""The knobs of a run, grouped in small frozen values and validated once, where they are built.

`RateLimit` is one bucket's shape, `RetryPolicy` how hard to retry, `Options` the whole run. Every check
raises `ConfigError` with a one-line message naming the flag, so the CLI and the Python API fail the same
way on nonsense values (negative rate, zero concurrency, ...).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bulkops.cloud.auth import Credentials
from bulkops.errors import ConfigError
from bulkops.operations import STOP, Operation


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:/\s*(s|sec|second|m|min|minute))?\s*$", re.I)
_PER_MINUTE = frozenset({"m", "min", "minute"})


def parse_rate(text: str | float) -> float:
    """Requests per second from `10`, `10/s`, `2.5/sec`, `10/second`, `600/min` or `600/minute` (= 10/s).

    The simulator's `--rate-limit` takes the same forms, so one spelling works for both. A number is
    passed through; anything else is a `ConfigError` naming the accepted forms. Zero and negative rates
    are left to `RateLimit` to refuse.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    try:
        return float(text)  # a plain number, as before (`-1` and `nan` are then refused by RateLimit)
    except ValueError:
        pass
    match = _RATE_RE.match(str(text))
    if match is None:
        raise ConfigError(f"a rate looks like 10, 10/s or 600/min, got {str(text)!r}")
    value = float(match[1])
    unit = (match[2] or "s").lower()
    return value / 60.0 if unit in _PER_MINUTE else value


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: `rate` requests per second on average, at most `burst` at once after an idle spell.

    `burst` defaults to `rate` (rounded up, at least 1).
    """

    rate: float
    burst: float | None = None

    def __post_init__(self) -> None:
        _positive("rate", self.rate)
        if self.burst is not None:
            _positive("burst", self.burst)

    @property
    def capacity(self) -> float:
        """The bucket's size: `burst`, or `rate` rounded up (at least 1) when no burst was given."""
        if self.burst is not None:
            return max(1.0, self.burst)
        return max(1.0, float(math.ceil(self.rate)))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to retry transient failures.

    Backoff is exponential with full jitter: attempt n waits uniform(0, min(max_delay, base_delay * 2**(n-1)))
    or the server's `Retry-After` when it is longer. `budget_ratio` caps retries across the whole run at that
    share of first attempts (plus `budget_floor`), so an outage fails fast instead of multiplying traffic.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    budget_ratio: float = 0.2
    budget_floor: int = 20

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(f"--max-attempts must be a whole number >= 1, got {self.max_attempts!r}")
        _positive("base_delay", self.base_delay)
        _positive("max_delay", self.max_delay)
        if not (math.isfinite(self.budget_ratio) and self.budget_ratio >= 0):
            raise ConfigError(f"budget_ratio must be zero or more, got {self.budget_ratio!r}")
        if self.budget_floor < 0:
            raise ConfigError(f"budget_floor must be zero or more, got {self.budget_floor!r}")


@dataclass(frozen=True, slots=True)
class Options:
    """Everything a run needs besides its input. Build it with keyword arguments; it validates itself."""

    endpoint: str
    credentials: Credentials | None = None
    rate: RateLimit = field(default_factory=lambda: RateLimit(10.0))
    rates: Mapping[str, RateLimit] = field(default_factory=dict)
    global_rate: RateLimit | None = None
    concurrency: int = 64
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 30.0
    wait: bool = False
    wait_timeout: float = 900.0
    poll_interval: float = 3.0
    lookahead: int = 10_000
    circuit_threshold: int = 5
    grace: float = 10.0
    insecure: bool = False
    adaptive: bool = True
    throttle_timeout: float = 900.0
    slow_start: bool = True
    operation: Operation = STOP
    """What is done to each instance (`bulkops.operations`: STOP, START, REBOOT)."""

    def __post_init__(self) -> None:
        if not isinstance(self.operation, Operation):
            raise ConfigError(f"operation must be a bulkops.operations.Operation, got {self.operation!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigError(f"--concurrency must be a whole number of at least 1, got {self.concurrency!r}")
        _positive("--timeout", self.timeout)
        _positive("--wait-timeout", self.wait_timeout)
        _positive("--poll-interval", self.poll_interval)
        _positive("--throttle-timeout", self.throttle_timeout)
        if self.lookahead < 1:
            raise ConfigError(f"lookahead must be at least 1, got {self.lookahead!r}")
        if self.circuit_threshold < 1:
            raise ConfigError(f"circuit_threshold must be at least 1, got {self.circuit_threshold!r}")
        if not (math.isfinite(self.grace) and self.grace >= 0):
            raise ConfigError(f"grace must be zero or more seconds, got {self.grace!r}")

    def rate_known(self, project_id: str) -> bool:
        """True when the project's limit is known, so that it starts at its rate without a slow start: a
        `rates` entry (`--rates-file`) states it, or `slow_start` is off (`--rate` is the real limit)."""
        return not self.slow_start or project_id in self.rates

    def rate_for(self, project_id: str) -> RateLimit:
        """The bucket shape for one project: its entry in `rates`, else the default `rate`."""
        return self.rates.get(project_id, self.rate)
