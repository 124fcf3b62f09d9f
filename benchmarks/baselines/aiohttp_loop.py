"""The minimal hand-written client: an asyncio queue, C workers, one aiohttp session, bulkops' signer.

    python -m benchmarks.baselines.aiohttp_loop CSV URL --concurrency 64

This is what a careful engineer writes in an afternoon, and the bar for bulkops' engine (at least 0.8x of
its requests/s): it has no rate limits, retries, report, resume or validation, only a bounded queue fed
from the CSV, workers that sign and send a PUT and parse the JSON answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter

import aiohttp
from yarl import URL

from benchmarks.baselines.common import credentials, report, rows
from bulkops.cloud.auth import Credentials, auth_headers, signer_for


async def run(path: str, url: str, concurrency: int) -> None:
    started = time.monotonic()
    ak, sk = credentials()
    creds = Credentials(ak=ak, sk=sk)
    signer = signer_for(creds)
    base = URL(url)
    host = f"{base.host}:{base.port}"
    queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(maxsize=concurrency * 4)
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    done = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while (item := await queue.get()) is not None:
            project_id, instance_id = item
            path = f"/v1/{project_id}/dev-servers/{instance_id}/stop"
            headers = auth_headers(creds, signer, method="PUT", host=host, path=path, project_id=project_id)
            sent = time.monotonic()
            async with session.put(URL(url + path, encoded=True), headers=headers) as resp:
                body = await resp.read()
                json.loads(body)
                statuses[resp.status] += 1
            latencies.append(time.monotonic() - sent)
            done += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        first = time.monotonic()
        workers = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
        for item in rows(path):
            await queue.put(item)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        last = time.monotonic()
    report(done, started, first, last, statuses, latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    # The same event loop bulkops runs on (uvloop when installed), so the ratio compares the engines.
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(args.csv, args.url, args.concurrency))
    else:
        uvloop.run(run(args.csv, args.url, args.concurrency))


if __name__ == "__main__":
    main()
