"""Every knob of the simulator, as small frozen values with defaults that give a quiet, well-behaved API.

    SimulatorConfig      the whole server: inventory, state machine, auth, throttling, latency, faults, log
    ├── InventorySpec    (inventory.py) what to generate: projects x instances, status mix, seed
    ├── AccessKey        one AK/SK pair the "gateway" accepts, optionally bound to a security token
    ├── Limit            one throttling policy: `limit` requests per second or per minute
    └── FaultShares      the share of requests that fail, by kind

Shares are probabilities in [0, 1]. They are checked once, here, with a `ValueError` naming the field, so
the command line and the Python API fail the same way on nonsense values. Secrets (SK, security tokens,
IAM tokens) are kept out of every repr.

The clock is not a knob: `Simulator` and `run_simulator` take it as a keyword argument, because a config
is a value that can be printed, compared and passed to a subprocess, and a callable is none of that.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from bulkops.simulator.inventory import InventorySpec

Window = Literal["second", "minute"]
WINDOW_SECONDS: Mapping[str, float] = {"second": 1.0, "minute": 60.0}

_LIMIT_RE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute)\s*$")


def check_share(name: str, value: float) -> None:
    """Raise ValueError unless `value` is a probability."""
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


def check_non_negative(name: str, value: float) -> None:
    """Raise ValueError unless `value` is a finite number >= 0."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class Limit:
    """A gateway throttling policy: at most `limit` requests per `window` (a token bucket of that size)."""

    limit: int
    window: Window = "second"

    def __post_init__(self) -> None:
        if not (isinstance(self.limit, int) and self.limit >= 1):
            raise ValueError(f"a rate limit must be a whole number >= 1, got {self.limit!r}")
        if self.window not in WINDOW_SECONDS:
            raise ValueError(f"a rate limit window is 'second' or 'minute', got {self.window!r}")

    @property
    def seconds(self) -> float:
        """The window's length in seconds."""
        return WINDOW_SECONDS[self.window]

    @classmethod
    def parse(cls, text: str) -> Limit:
        """`10/s`, `10/second`, `600/min`, `600/minute`."""
        match = _LIMIT_RE.match(text)
        if match is None:
            raise ValueError(f"a rate limit looks like 10/s or 600/min, got {text!r}")
        return cls(int(match[1]), "second" if match[2].startswith("s") else "minute")

    def __str__(self) -> str:
        return f"{self.limit}/{self.window}"


@dataclass(frozen=True, slots=True)
class AccessKey:
    """An AK/SK pair the simulator accepts. With `security_token`, requests must carry that token.

    The token is what a temporary credential sends as `X-Security-Token`; it must also be signed.
    """

    ak: str
    sk: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.ak or not self.sk:
            raise ValueError("an access key needs both an AK and an SK")


@dataclass(frozen=True, slots=True)
class FaultShares:
    """Shares of requests (after authentication and throttling) that fail instead of being served.

    One seeded draw per request picks at most one fault, so their sum must not exceed 1:

    * `http_500` .. `http_504`: an error answer with that status and nothing done;
    * `reset`: the connection is aborted without an answer (the client sees a disconnect);
    * `hang`: no answer for `hang_seconds` (then a 504), longer than a sane client timeout;
    * `applied_then_503`: the stop takes effect, but the answer is a 503 (the ambiguous case).
    """

    http_500: float = 0.0
    http_502: float = 0.0
    http_503: float = 0.0
    http_504: float = 0.0
    reset: float = 0.0
    hang: float = 0.0
    applied_then_503: float = 0.0

    def __post_init__(self) -> None:
        total = 0.0
        for f in fields(self):
            value = getattr(self, f.name)
            check_share(f.name, value)
            total += value
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault shares add up to {total:g}, more than 1")

    @property
    def total(self) -> float:
        """The share of requests that fail in some way."""
        return float(sum(getattr(self, f.name) for f in fields(self)))


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything the simulator does, with defaults that make it a quiet, fast, fault-free API.

    Inventory: `inventory` is generated unless `inventory_file` (JSON or CSV) is given. Ids come from
    `inventory.seed`; `seed` drives the fault and latency draws (the command line sets both from --seed).
    State machine: a stop moves RUNNING -> STOPPING, and `stop_delay` seconds later STOPPING -> STOPPED
    (or STOP_FAILED for a `stop_failed_share` of instances, chosen per instance id).
    Unknown ids answer `ModelArts.6309`, as a 404 for a `not_found_404_share` of ids (per id) else a 400.
    Auth: with `auth_enabled`, each request needs a valid SDK-HMAC-SHA256 signature by one of
    `access_keys` (with `X-Sdk-Date` within `max_clock_skew` seconds), or an `X-Auth-Token` in
    `auth_tokens`. Projects in `forbidden_projects` answer 403 to everyone.
    Throttling: one bucket per project (`project_limits[project]`, else `project_limit`; None = unlimited)
    and optionally one per credential across projects (`credential_limit`). `retry_after` adds a
    `Retry-After` header (whole seconds until a token is free) to 429 answers. `throttle_hints` off makes
    the 429 message bare (no `limit:N,time:...`). `limit_schedule` ((at seconds, factor), ...) scales
    every limit from `at` seconds after the first request on (a quota cut or raised mid-run).
    Latency: every answer waits `latency + uniform(0, jitter)` seconds.
    Faults: `faults` shares, only for `fault_projects` when that is set; hangs last `hang_seconds`.
    Outage: the first `outage_requests` requests that pass the gateway (auth, 403, throttling), in the
    `fault_projects` when set, answer 503 with nothing done (fault kind `outage`), before any drawn fault:
    an outage that ends by itself, counted in requests so that a test repeats exactly.
    Log: with `record_requests`, the last `request_log_size` requests are kept in `Simulator.request_log`.
    """

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    inventory: InventorySpec = field(default_factory=InventorySpec)
    inventory_file: Path | None = None
    stop_delay: float = 5.0
    stop_failed_share: float = 0.0
    not_found_404_share: float = 0.5
    auth_enabled: bool = True
    access_keys: tuple[AccessKey, ...] = ()
    auth_tokens: frozenset[str] = field(default=frozenset(), repr=False)
    max_clock_skew: float = 900.0
    forbidden_projects: frozenset[str] = frozenset()
    project_limit: Limit | None = None
    project_limits: Mapping[str, Limit | None] = field(default_factory=dict)
    credential_limit: Limit | None = None
    retry_after: bool = False
    throttle_hints: bool = True
    limit_schedule: tuple[tuple[float, float], ...] = ()
    latency: float = 0.0
    jitter: float = 0.0
    faults: FaultShares = field(default_factory=FaultShares)
    fault_projects: frozenset[str] | None = None
    hang_seconds: float = 120.0
    outage_requests: int = 0
    record_requests: bool = True
    request_log_size: int = 100_000

    def __post_init__(self) -> None:
        if not (isinstance(self.port, int) and 0 <= self.port <= 65535):
            raise ValueError(f"port must be 0..65535, got {self.port!r}")
        for name in ("stop_delay", "max_clock_skew", "latency", "jitter", "hang_seconds"):
            check_non_negative(name, getattr(self, name))
        check_share("stop_failed_share", self.stop_failed_share)
        check_share("not_found_404_share", self.not_found_404_share)
        if not (isinstance(self.outage_requests, int) and self.outage_requests >= 0):
            raise ValueError(f"outage_requests must be a whole number >= 0, got {self.outage_requests!r}")
        for at, factor in self.limit_schedule:
            check_non_negative("limit_schedule time", at)
            if not (math.isfinite(factor) and factor > 0):
                raise ValueError(f"a limit_schedule factor must be > 0, got {factor!r}")
        if not (isinstance(self.request_log_size, int) and self.request_log_size >= 1):
            raise ValueError(f"request_log_size must be >= 1, got {self.request_log_size!r}")

    def limit_for(self, project_id: str) -> Limit | None:
        """The throttling policy of one project (its own, else the default; None = unlimited)."""
        if project_id in self.project_limits:
            return self.project_limits[project_id]
        return self.project_limit
