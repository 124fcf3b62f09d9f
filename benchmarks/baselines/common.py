"""What the baselines share: reading the CSV, credentials, and the JSON line they print."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator


def rows(path: str) -> Iterator[tuple[str, str]]:
    """(project_id, id) for every data row of a `project_id,id` CSV (header first)."""
    with open(path, encoding="utf-8") as fh:
        header = [h.strip() for h in fh.readline().split(",")]
        p_col, i_col = header.index("project_id"), header.index("id")
        for line in fh:
            fields = line.rstrip("\r\n").split(",")
            if len(fields) > max(p_col, i_col):
                yield fields[p_col], fields[i_col]


def credentials() -> tuple[str, str]:
    """AK and SK from the environment, as the SDK reads them."""
    return os.environ["HUAWEICLOUD_SDK_AK"], os.environ["HUAWEICLOUD_SDK_SK"]


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted values, nearest rank; 0.0 for none."""
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def report(
    n: int, started: float, first: float, last: float, statuses: Counter[int], lat: list[float]
) -> None:
    """Print the one JSON line the harness reads."""
    lat.sort()
    print(
        json.dumps(
            {
                "rows": n,
                "elapsed": last - first,
                "process_elapsed": last - started,
                "statuses": {str(k): v for k, v in statuses.items()},
                "throttled": statuses.get(429, 0),
                "p50_ms": percentile(lat, 50) * 1000,
                "p99_ms": percentile(lat, 99) * 1000,
            }
        ),
        flush=True,
    )
