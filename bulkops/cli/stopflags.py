"""The stop command's flags turned into `Options`: the endpoint (from --endpoint or --region), the rates
file, and every knob, each checked once with a one-line `ConfigError` naming the flag.

Kept apart from `command_stop` (which runs the command) so that the flag rules read in one place and the
Python API's users can build the same `Options` the command line does.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from bulkops.cloud.auth import Credentials
from bulkops.cloud.regions import endpoint_for, unknown_region
from bulkops.errors import ConfigError
from bulkops.operations import STOP
from bulkops.options import Options, RateLimit, RetryPolicy, parse_rate


def resolve_endpoint(endpoint: str | None, region: str | None) -> str | None:
    """--endpoint wins over --region; None when neither is given. A region not in the SDK's table is a
    ConfigError naming the closest known ones (a typo would otherwise fail every row on DNS)."""
    if endpoint:
        return endpoint
    if region:
        url, known = endpoint_for(region)
        if not known:
            raise ConfigError(unknown_region(region.strip()))
        return url
    return None


def load_rates(path: str) -> dict[str, RateLimit]:
    """Per-project limits from a CSV (project_id,rate[,burst]) or JSON file (list or mapping)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read --rates-file {path}: {exc.strerror or exc}") from exc
    rows: list[dict[str, Any]]
    try:
        if path.lower().endswith(".json") or text.lstrip().startswith(("{", "[")):
            data = json.loads(text)
            if isinstance(data, dict):
                rows = [
                    {"project_id": k, **(v if isinstance(v, dict) else {"rate": v})} for k, v in data.items()
                ]
            elif isinstance(data, list):
                if not all(isinstance(r, dict) for r in data):
                    raise ConfigError(f"--rates-file {path}: every list entry must be an object")
                rows = data
            else:
                raise ConfigError(f"--rates-file {path}: expected a JSON list or object")
        else:
            rows = [
                {k.strip().lower(): v for k, v in r.items() if k} for r in csv.DictReader(io.StringIO(text))
            ]
        rates: dict[str, RateLimit] = {}
        for n, row in enumerate(rows, start=1):
            project = str(row.get("project_id", "")).strip()
            if not project:
                raise ConfigError(f"--rates-file {path}: entry {n} has no project_id")
            burst = row.get("burst")
            try:
                rates[project] = RateLimit(
                    parse_rate(row["rate"]), float(burst) if burst not in (None, "") else None
                )
            except ConfigError as exc:
                raise ConfigError(f"--rates-file {path}: {project}: {exc}") from exc
        return rates
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"--rates-file {path}: each entry needs project_id and a rate (10, 10/s or 600/min)"
        ) from exc


def build_options(kw: dict[str, Any], endpoint: str, credentials: Credentials | None) -> Options:
    """Options from a run command's flags (raises ConfigError on nonsense values); `kw["operation"]` is the
    command's operation (stop when absent)."""
    rates = load_rates(kw["rates_file"]) if kw.get("rates_file") else {}
    try:
        rate = RateLimit(kw["rate"], kw["burst"])
    except ConfigError as exc:
        raise ConfigError(f"--rate/--burst: {exc}") from exc
    try:
        global_rate = RateLimit(kw["global_rate"]) if kw["global_rate"] is not None else None
    except ConfigError as exc:
        raise ConfigError(f"--global-rate: {exc}") from exc
    return Options(
        endpoint=endpoint,
        credentials=credentials,
        rate=rate,
        rates=rates,
        global_rate=global_rate,
        concurrency=kw["concurrency"],
        retry=RetryPolicy(max_attempts=kw["max_attempts"]),
        timeout=kw["timeout"],
        wait=kw["wait"],
        wait_timeout=kw["wait_timeout"],
        throttle_timeout=kw.get("throttle_timeout", 900.0),
        slow_start=kw.get("slow_start", True),
        poll_interval=kw.get("poll_interval", 3.0),
        insecure=kw["insecure"],
        operation=kw.get("operation", STOP),
    )
