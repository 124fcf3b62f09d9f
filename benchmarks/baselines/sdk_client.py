"""The official SDK's async client: ModelArtsAsyncClient.stop_dev_server_async for every row.

    python -m benchmarks.baselines.sdk_client CSV URL --window 256

`stop_dev_server_async` returns a future at once; the client keeps at most `--window` of them open and
waits for the oldest when full (so memory stays bounded). The SDK runs them on its own ThreadPoolExecutor
of 8 threads over `requests`: never more than 8 in flight, whatever the window. One client per project
(the SDK binds the project to the credentials); retries off, as for the other clients.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter, deque
from typing import Any

from benchmarks.baselines.common import credentials, report, rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("url")
    parser.add_argument("--window", type=int, default=256)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
    from huaweicloudsdkcore.http.http_config import HttpConfig
    from huaweicloudsdkmodelarts.v1 import ModelArtsAsyncClient, StopDevServerRequest

    started = time.monotonic()
    ak, sk = credentials()
    clients: dict[str, Any] = {}

    def client_for(project_id: str) -> Any:
        client = clients.get(project_id)
        if client is None:
            config = HttpConfig.get_default_config()
            config.timeout = (5, 30)
            config.retry_times = 0
            client = clients[project_id] = (
                ModelArtsAsyncClient.new_builder()
                .with_http_config(config)
                .with_credentials(BasicCredentials(ak, sk, project_id))
                .with_endpoints([args.url])
                .build()
            )
        return client

    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    window: deque[tuple[float, Any]] = deque()

    def settle() -> None:
        sent, future = window.popleft()
        try:
            future.result()
            statuses[200] += 1
        except ClientRequestException as exc:
            statuses[exc.status_code] += 1
        latencies.append(time.monotonic() - sent)

    first = time.monotonic()
    n = 0
    for project_id, instance_id in rows(args.csv):
        if len(window) >= args.window:
            settle()
        window.append(
            (
                time.monotonic(),
                client_for(project_id).stop_dev_server_async(StopDevServerRequest(id=instance_id)),
            )
        )
        n += 1
    while window:
        settle()
    last = time.monotonic()
    report(n, started, first, last, statuses, latencies)


if __name__ == "__main__":
    main()
