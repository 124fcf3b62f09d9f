"""Baseline clients the benchmarks run side by side with bulkops, each as its own process.

    aiohttp_loop  a minimal hand-written asyncio queue-worker loop over one aiohttp session, signing every
                  request with bulkops' signer: the best a careful script does, the bar for bulkops' engine
    sdk_client    the official SDK's ModelArtsAsyncClient (requests on a pool of 8 threads)

Both read the benchmark CSV (project_id,id), stop every row once (no retries, no rate limit), and print
one JSON line on stdout: rows, elapsed seconds, statuses, latency percentiles.
"""
