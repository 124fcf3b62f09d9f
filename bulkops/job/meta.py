"""What a job publishes about itself (its `meta` hash), and the `Options` a worker builds from it.

The options a worker takes from the job are every knob that decides what is sent and how often (the
operation, rates, retries, timeouts, `--wait`); what it brings itself is its endpoint (which must be the
job's), its credentials (which must be the job's credential: compared by their keyed hash,
`redis.naming.credential_name`, never by value) and its `--concurrency`. No secret is ever written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bulkops.cloud.auth import Credentials
from bulkops.errors import ConfigError
from bulkops.operations import OPERATIONS
from bulkops.options import Options, RateLimit, RetryPolicy
from bulkops.redis.naming import credential_name, normal_endpoint

RUNNING = "running"
CANCELLED = "cancelled"
DONE = "done"


def _rate(limit: RateLimit | None) -> list[float | None] | None:
    return None if limit is None else [limit.rate, limit.burst]


def _limit(value: Any) -> RateLimit | None:
    return (
        None if value is None else RateLimit(float(value[0]), None if value[1] is None else float(value[1]))
    )


def options_json(options: Options) -> str:
    """The job's options as JSON (no endpoint, no credentials: those are checked, not taken)."""
    return json.dumps(
        {
            "operation": options.operation.name,
            "rate": _rate(options.rate),
            "rates": {p: _rate(r) for p, r in sorted(options.rates.items())},
            "global_rate": _rate(options.global_rate),
            "concurrency": options.concurrency,
            "max_attempts": options.retry.max_attempts,
            "timeout": options.timeout,
            "wait": options.wait,
            "wait_timeout": options.wait_timeout,
            "poll_interval": options.poll_interval,
            "throttle_timeout": options.throttle_timeout,
            "slow_start": options.slow_start,
            "insecure": options.insecure,
        },
        sort_keys=True,
    )


def job_fields(options: Options, input_sha: str, created: str) -> dict[str, str]:
    """The `meta` hash of a new job."""
    return {
        "state": RUNNING,
        "fed": "0",
        "operation": options.operation.name,
        "endpoint": normal_endpoint(options.endpoint),
        "credential": credential_name(options.credentials),
        "options": options_json(options),
        "input": input_sha,
        "created": created,
    }


@dataclass(frozen=True, slots=True)
class JobMeta:
    """A job as read back from its `meta` hash."""

    name: str
    fields: dict[str, str]

    @property
    def state(self) -> str:
        return self.fields.get("state", RUNNING)

    @property
    def fed(self) -> bool:
        """Every row of the input is published (what is left is in the streams)."""
        return self.fields.get("fed") == "1"

    def check_joiner(self, endpoint: str, credentials: Credentials | None) -> None:
        """A worker may join only with the job's endpoint and credential: ConfigError (one line) if not."""
        if normal_endpoint(endpoint) != self.fields.get("endpoint"):
            theirs, mine = self.fields.get("endpoint"), normal_endpoint(endpoint)
            raise ConfigError(f"job {self.name} runs against {theirs}, not {mine}: give the job's --endpoint")
        if credential_name(credentials) != self.fields.get("credential"):
            raise ConfigError(
                f"job {self.name} runs with another credential than this worker's (HUAWEICLOUD_SDK_AK or "
                "BULKOPS_AUTH_TOKEN): join with the job's credential"
            )

    def options(self, endpoint: str, credentials: Credentials | None, concurrency: int | None) -> Options:
        """The options a worker runs the job's rows with (its own endpoint, credentials, concurrency)."""
        try:
            o = json.loads(self.fields["options"])
            return Options(
                endpoint=endpoint,
                credentials=credentials,
                operation=OPERATIONS[o["operation"]],
                rate=_limit(o["rate"]) or RateLimit(10.0),
                rates={p: r for p, v in o["rates"].items() if (r := _limit(v)) is not None},
                global_rate=_limit(o["global_rate"]),
                concurrency=concurrency or int(o["concurrency"]),
                retry=RetryPolicy(max_attempts=int(o["max_attempts"])),
                timeout=float(o["timeout"]),
                wait=bool(o["wait"]),
                wait_timeout=float(o["wait_timeout"]),
                poll_interval=float(o["poll_interval"]),
                throttle_timeout=float(o["throttle_timeout"]),
                slow_start=bool(o["slow_start"]),
                insecure=bool(o["insecure"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"job {self.name} in Redis is not one this bulkops can run ({exc!r})") from exc
