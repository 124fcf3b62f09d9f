"""What the gateway's 429 message says about its limit, and whose limit it is.

    parse_throttle  "…policy user over ratelimit,limit:10,time:1 second" -> ThrottleHint(10, 1.0, "user")
    ThrottleHint    `limit` requests per `window` seconds, the policy that set it, and whether it is shared

Whose limit (API-NOTES: the gateway's policies are layered). `policy user`, `policy app` and `policy ip`
count every request of one credential (or one source address), whatever project it names: such a hint
caps the credential's ceiling (the engine's global bucket), not one project's bucket. Any other policy
(`api`, or none named) is taken as the project's own limit.

Sane bounds. A hint is the server's word, but a garbled or absurd one (`limit:1,time:1000 hour`, a rate of
one request in six weeks) must not park a run for weeks: `effective_rate` clamps it to `MIN_HINT_RATE`
(0.1/s) and says so (`clamped`), so the caller can warn; `--throttle-timeout` still bounds the wait.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The lowest rate a hint may set (requests per second); lower hints are clamped to it, with a warning.
MIN_HINT_RATE = 0.1
#: Policies counted per credential (or source address), shared by every project it touches.
SHARED_POLICIES = frozenset({"user", "app", "ip"})


@dataclass(frozen=True, slots=True)
class ThrottleHint:
    """The gateway's limit as its 429 message states it: `limit` requests per `window` seconds.

    `policy` is the word before "over ratelimit" ("user", "api", "app", ...), when the message names one.
    """

    limit: int
    window: float
    policy: str | None = None

    @property
    def rate(self) -> float:
        """The limit in requests per second, as stated."""
        return self.limit / self.window

    @property
    def clamped(self) -> bool:
        """True when the stated rate is below `MIN_HINT_RATE` (absurd, or a very long window)."""
        return self.rate < MIN_HINT_RATE

    @property
    def effective_rate(self) -> float:
        """The rate to use: the stated one, at least `MIN_HINT_RATE`."""
        return max(MIN_HINT_RATE, self.rate)

    @property
    def shared(self) -> bool:
        """True when the policy counts a credential's requests across projects (user, app, ip)."""
        return self.policy in SHARED_POLICIES


_UNITS = {
    "ms": 0.001,
    "millisecond": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_LIMIT_RE = re.compile(
    r"limit\s*[:=]\s*(?P<limit>\d+)\s*[,;]?\s*time\s*[:=]\s*(?P<n>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)",
    re.IGNORECASE,
)
_POLICY_RE = re.compile(r"policy\s+(?P<policy>[\w-]+)\s+over\s+ratelimit", re.IGNORECASE)


def parse_throttle(error_msg: str | None) -> ThrottleHint | None:
    """The limit a throttling message states (`...,limit:10,time:1 second`), or None when it states none.

    Tolerant of spacing, case, plurals and abbreviations (`1 minute`, `60 seconds`, `1min`, `2 hours`).
    """
    if not error_msg:
        return None
    match = _LIMIT_RE.search(error_msg)
    if match is None:
        return None
    unit = match["unit"].lower()
    seconds_per_unit = _UNITS.get(unit) or _UNITS.get(unit.removesuffix("s"))
    limit = int(match["limit"])
    amount = float(match["n"]) if match["n"] else 1.0
    if seconds_per_unit is None or limit <= 0 or amount <= 0:
        return None
    policy = _POLICY_RE.search(error_msg)
    return ThrottleHint(limit, amount * seconds_per_unit, policy["policy"].lower() if policy else None)
