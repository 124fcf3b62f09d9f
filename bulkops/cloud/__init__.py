"""The cloud side: what bulkops knows of the ModelArts API and its gateway.

    api        the HTTP client (aiohttp): signed requests, whole bodies read under a size cap
    auth       credentials and the SDK-identical AK/SK signing
    deadlines  per-request timeouts (one sweeping timer)
    hints      the gateway's 429 messages (`limit:N,time:...`, shared policies)
    outcomes   an answer classified: done, already done, retry, throttled, pending
    preflight  the checks a run passes before anything is sent
    regions    region name -> endpoint

Imports only `models`, `errors`, `redact`, `validation` from the top level; nothing from `engine`, `io`
or `cli`.
"""
