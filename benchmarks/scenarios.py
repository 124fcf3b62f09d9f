"""The scenarios of the performance issue, each a function returning one JSON-able result.

A result holds its parameters, the `runs` (one per client process: rows, req/s, 429s, latency, peak RSS,
timeline per project), the bound it is measured against, ratios, and `targets` (each a named figure, the
limit it must meet, and whether it did). Ratios are always of two figures measured in the same run.

`Size` scales every scenario down for `smoke` (seconds, asserts nothing) and keeps the issue's sizes
otherwise.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.harness import ClientRun, bulkops_stop, report_metrics, run_client

SDK_AVAILABLE = True
try:  # a benchmark-only dependency (the `bench` extra)
    import huaweicloudsdkmodelarts  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    SDK_AVAILABLE = False


@dataclass(frozen=True)
class Size:
    """How big each scenario is."""

    rate_rows_per_project: int = 750
    cpu_rows: int = 20_000
    sdk_rows: int = 3_000
    sdk_latency_rows: int = 1_000
    latency_rows: int = 20_000
    memory_rows: tuple[int, ...] = (100_000, 1_000_000)
    rounds: int = 5
    sign_iterations: int = 20_000
    startup_repeats: int = 5
    throttle_seconds: float = 30.0  # each project's rows in `throttle`: this many seconds of its own limit
    shared_rows_per_project: int = 600  # `shared`: 4 projects at 20/s, split among 3 runners
    shared_rounds: int = 2
    job_latency_rows_per_project: int = 300  # `job`, latency-bound: 1,200 rows, 30 s for one process
    job_rate_rows_per_project: int = 300  # `job`, rate-bound: 4 projects at 20/s, 15 s at best
    timeout: float = 600.0


FULL = Size()
SMOKE = Size(
    rate_rows_per_project=12,
    cpu_rows=300,
    sdk_rows=40,
    sdk_latency_rows=20,
    latency_rows=300,
    memory_rows=(200, 400),
    rounds=1,
    sign_iterations=500,
    startup_repeats=1,
    throttle_seconds=2.0,
    shared_rows_per_project=40,
    shared_rounds=1,
    job_latency_rows_per_project=10,
    job_rate_rows_per_project=10,
    timeout=60.0,
)


def target(name: str, value: float, op: str, limit: float, unit: str = "") -> dict[str, Any]:
    """One checked figure: `value op limit` (op is '>=' or '<=')."""
    met = value >= limit if op == ">=" else value <= limit
    return {"name": name, "value": value, "op": op, "limit": limit, "unit": unit, "met": met}


def _bulkops_run(
    name: str,
    csv: Path,
    url: str,
    work: Path,
    *,
    rate: float,
    concurrency: int,
    size: Size,
    sim: harness.Server | None = None,
    slow_start: bool = True,
    operation: str = "stop",
    extra: tuple[str, ...] = (),
    client: str = "bulkops",
) -> dict[str, Any]:
    report = work / f"{name}.jsonl"
    report.unlink(missing_ok=True)
    before = sim.stats() if sim is not None else None
    cmd = bulkops_stop(
        csv, url, report, rate=rate, concurrency=concurrency, slow_start=slow_start, operation=operation,
        extra=extra,
    )  # fmt: skip
    run = run_client(cmd, name, workdir=work, timeout=size.timeout)
    if run.returncode not in (0, 1):
        raise RuntimeError(f"{name}: bulkops exited {run.returncode}: {run.stderr[-2000:]}")
    metrics = report_metrics(report)
    report.unlink(missing_ok=True)
    requests = harness.requests_from_summary(run.stderr) or metrics.get("attempts", 0)
    throttled = harness.throttled_from_summary(run.stderr)
    if sim is not None and before is not None:
        after = sim.stats()
        if after is not None:  # the server's own count of 429s and requests in this run
            throttled = after["totals"]["throttled"] - before["totals"]["throttled"]
            requests = after["totals"]["requests"] - before["totals"]["requests"]
    return _run_record(run, client, metrics, requests=requests, throttled=throttled or 0)


def _run_record(
    run: ClientRun, client: str, metrics: dict[str, Any], *, requests: int, throttled: int
) -> dict[str, Any]:
    return {
        "client": client,
        "process": run.name,
        "exit": run.returncode,
        "rows": metrics.get("rows", 0),
        "requests": requests,
        "elapsed_s": metrics.get("span_s", run.wall),
        "process_wall_s": run.wall,
        "rps": metrics.get("rps", 0.0),
        "throttled": throttled,
        "throttle_share": throttled / requests if requests else 0.0,
        "p50_ms": metrics.get("p50_ms"),
        "p99_ms": metrics.get("p99_ms"),
        "peak_rss_mb": run.peak_rss_mb,
        "timeline": metrics.get("timeline", {}),
    }


def _baseline_run(
    client: str, module: str, csv: Path, url: str, work: Path, name: str, size: Size, *extra: str
) -> dict[str, Any]:
    run = run_client(
        [harness.PYTHON, "-m", module, str(csv), url, *extra], name, workdir=work, timeout=size.timeout
    )
    data = run.json_line()
    elapsed = max(data["elapsed"], 1e-6)
    metrics = {
        "rows": data["rows"],
        "span_s": elapsed,
        "rps": data["rows"] / elapsed,
        "p50_ms": data["p50_ms"],
        "p99_ms": data["p99_ms"],
    }
    return _run_record(run, client, metrics, requests=data["rows"], throttled=data["throttled"])


def _median_rps(runs: list[dict[str, Any]], client: str) -> float:
    values = [r["rps"] for r in runs if r["client"] == client]
    return statistics.median(values) if values else 0.0


def _paired_ratio(runs: list[dict[str, Any]], client: str, other: str) -> float:
    """The median over rounds of `client`'s req/s over `other`'s in the same round.

    This VM's speed drifts by 10-30 % over tens of seconds. Two runs of one round are seconds apart, so
    their ratio cancels most of the drift; a ratio of two medians taken over the whole scenario does not.
    """
    mine = [r["rps"] for r in runs if r["client"] == client]
    theirs = [r["rps"] for r in runs if r["client"] == other]
    pairs = [a / b for a, b in zip(mine, theirs, strict=False) if b > 0]
    return statistics.median(pairs) if pairs else 0.0


# -- rate-bound and adaptive ------------------------------------------------------------------------------


def _limited(
    name: str,
    work: Path,
    size: Size,
    *,
    limits: list[str],
    rows: list[int],
    rate: float,
    latency: float = 0.05,
    ideal: Callable[[list[int]], float],
    description: str,
    operation: str = "stop",
    status: str = "RUNNING",
) -> dict[str, Any]:
    """bulkops against the simulator with per-project limits; the result's bound is the ideal span.

    `operation` is the command run (`stop`; `start` on a fleet all `status` STOPPED): the same engine, so
    the same bound."""
    projects = len(limits)
    full = work / f"{name}-all.csv"
    ids = harness.make_csv(full, projects=projects, per_project=max(rows), seed=7)
    csv = work / f"{name}.csv"
    harness.trim_csv(full, csv, dict(zip(ids, rows, strict=True)))
    sim_args = ["--seed", "7", "--projects", str(projects), "--instances-per-project", str(max(rows))]
    sim_args += ["--status-mix", f"{status}=1", "--latency", str(latency)]
    for project, limit in zip(ids, limits, strict=True):
        sim_args += ["--project-rate-limit", f"{project}={limit}"]
    with harness.simulator(sim_args, log=work / f"{name}-server.log") as sim:
        run = _bulkops_run(
            name, csv, sim.url, work, rate=rate, concurrency=64, size=size, sim=sim, operation=operation
        )
    best = ideal(rows)
    return {
        "scenario": name,
        "description": description,
        "params": {
            "limits": limits,
            "rows": rows,
            "rate": rate,
            "latency": latency,
            "concurrency": 64,
            "operation": operation,
        },
        "bound": {"kind": "ideal seconds", "value": best},
        "runs": [run],
        "ratio_to_bound": best / run["elapsed_s"] if run["elapsed_s"] else 0.0,
    }


def _per_second(limit: str) -> tuple[int, float]:
    n, unit = limit.split("/")
    return int(n), 1.0 if unit.startswith("s") else 60.0


def _ideal_per_second(limits: list[str]) -> Callable[[list[int]], float]:
    """The ideal span for per-second limits: the slowest project's (rows - burst) / limit."""
    per = [_per_second(lim)[0] for lim in limits]
    return lambda rows: max((r - n) / n for r, n in zip(rows, per, strict=True))


def scenario_rate(
    work: Path, size: Size, *, name: str = "rate", operation: str = "stop", status: str = "RUNNING"
) -> list[dict[str, Any]]:
    """Target 1: 8 projects at 25/s, sorted input, 50 ms latency, --rate 25: ideal span, zero 429s."""
    n = size.rate_rows_per_project
    result = _limited(
        name,
        work,
        size,
        limits=["25/s"] * 8,
        rows=[n] * 8,
        rate=25.0,
        ideal=_ideal_per_second(["25/s"] * 8),
        description="8 projects x 25/s, rows sorted by project, 50 ms, --rate 25 (= the server's limit)",
        operation=operation,
        status=status,
    )
    run = result["runs"][0]
    result["targets"] = [
        target("span / ideal", run["elapsed_s"] / result["bound"]["value"], "<=", 1.02),
        target("429s", run["throttled"], "<=", 0),
    ]
    return [result]


def scenario_start(work: Path, size: Size) -> list[dict[str, Any]]:
    """Target 1 for `bulkops start` (issue 16): the rate scenario on a STOPPED fleet. The operation is a
    parameter of the engine, so the same bound and targets hold."""
    return scenario_rate(work, size, name="start", operation="start", status="STOPPED")


def scenario_adaptive(work: Path, size: Size) -> list[dict[str, Any]]:
    """Target 2: --rate 3x the limit; unequal limits the tool is not told; a per-minute window."""
    n = size.rate_rows_per_project
    three = _limited(
        "adaptive-3x",
        work,
        size,
        limits=["25/s"] * 8,
        rows=[n] * 8,
        rate=75.0,
        ideal=_ideal_per_second(["25/s"] * 8),
        description="8 projects x 25/s, 50 ms, --rate 75 (3x the server's limit)",
    )
    run = three["runs"][0]
    three["targets"] = [
        target("throughput / ideal", three["ratio_to_bound"], ">=", 0.90),
        target("429 share", run["throttle_share"], "<=", 0.03),
    ]
    limits = ["5/s", "10/s", "25/s", "50/s"]
    scale = n / 750  # 30 s of each project's limit at full size
    rows = [max(2, round(30 * _per_second(lim)[0] * scale)) for lim in limits]
    unequal = _limited(
        "adaptive-unequal",
        work,
        size,
        limits=limits,
        rows=rows,
        rate=150.0,
        ideal=_ideal_per_second(limits),
        description="4 projects at 5, 10, 25, 50/s (not told), rows = 30 s of each, 50 ms, --rate 150",
    )
    run = unequal["runs"][0]
    unequal["targets"] = [
        target("throughput / ideal", unequal["ratio_to_bound"], ">=", 0.85),
        target("429 share", run["throttle_share"], "<=", 0.05),
    ]
    minute_rows = max(20, round(900 * scale))
    per_minute = _limited(
        "adaptive-minute",
        work,
        size,
        limits=["600/min"],
        rows=[minute_rows],
        rate=100.0,
        ideal=lambda rows: max(0.0, (rows[0] - 600) / 10),
        description="1 project at 600/minute (a bucket of 600, 10/s refill), 50 ms, --rate 100",
    )
    run = per_minute["runs"][0]
    per_minute["targets"] = [
        target("429 share (no storm)", run["throttle_share"], "<=", 0.01),
        target("throughput / ideal", per_minute["ratio_to_bound"], ">=", 0.85),
    ]
    if minute_rows <= 600:  # smoke: the window never runs out, there is no ideal to speak of
        per_minute["targets"] = per_minute["targets"][:1]
    return [three, unequal, per_minute]


# -- latency-bound -----------------------------------------------------------------------------------------


def scenario_latency(work: Path, size: Size) -> list[dict[str, Any]]:
    """Target 3: 100 ms latency, no limits, --concurrency 256: Little's law bound 2,560/s.

    The fast responder answers each request exactly 100 ms after it arrived; the simulator would add its
    own queueing at 2,560 requests/s on one core (p99 near 200 ms), and the bound would measure it.
    """
    rows = size.latency_rows
    csv = work / "latency.csv"
    harness.make_csv(csv, projects=1, per_project=rows, seed=11)
    runs: list[dict[str, Any]] = []
    with harness.fast_server(0.1, log=work / "latency-server.log") as srv:
        for r in range(size.rounds):
            runs.append(
                _bulkops_run(
                    f"latency-bulkops-{r}",
                    csv,
                    srv.url,
                    work,
                    rate=1e6,
                    concurrency=256,
                    size=size,
                    slow_start=False,
                )
            )
            runs.append(
                _baseline_run(
                    "aiohttp_loop",
                    "benchmarks.baselines.aiohttp_loop",
                    csv,
                    srv.url,
                    work,
                    f"latency-loop-{r}",
                    size,
                    "--concurrency",
                    "256",
                )
            )
    bound = 256 / 0.1
    bulk = _median_rps(runs, "bulkops")
    return [
        {
            "scenario": "latency",
            "description": "fast responder, 100 ms latency, no limits, --concurrency 256",
            "params": {"rows": rows, "latency": 0.1, "concurrency": 256},
            "bound": {"kind": "req/s (Little's law)", "value": bound},
            "runs": runs,
            "ratio_to_bound": bulk / bound,
            "ratios": {"aiohttp_loop": _paired_ratio(runs, "bulkops", "aiohttp_loop")},
            "targets": [target("req/s / Little's bound", bulk / bound, ">=", 0.95)],
        }
    ]


# -- CPU-bound --------------------------------------------------------------------------------------------


def _side_by_side(
    name: str, work: Path, size: Size, *, latency: float, concurrency: int, rows: int, sdk_rows: int
) -> dict[str, Any]:
    csv = work / f"{name}.csv"
    harness.make_csv(csv, projects=1, per_project=rows, seed=13)
    sdk_csv = work / f"{name}-sdk.csv"
    harness.trim_csv(csv, sdk_csv, _first_project(csv, sdk_rows))
    runs: list[dict[str, Any]] = []
    with harness.fast_server(latency, log=work / f"{name}-server.log") as srv:
        # Warm-up, not counted: the first run after a server starts is slower, whichever client it is.
        _baseline_run(
            "warm-up", "benchmarks.baselines.aiohttp_loop", sdk_csv, srv.url, work, f"{name}-warm-up", size
        )
        for r in range(size.rounds):  # A B C A B C: drift hits every client alike
            runs.append(
                _bulkops_run(
                    f"{name}-bulkops-{r}",
                    csv,
                    srv.url,
                    work,
                    rate=1e6,
                    concurrency=concurrency,
                    size=size,
                    slow_start=False,
                )
            )
            runs.append(
                _baseline_run(
                    "aiohttp_loop",
                    "benchmarks.baselines.aiohttp_loop",
                    csv,
                    srv.url,
                    work,
                    f"{name}-loop-{r}",
                    size,
                    "--concurrency",
                    str(concurrency),
                )
            )
            if SDK_AVAILABLE:
                runs.append(
                    _baseline_run(
                        "sdk",
                        "benchmarks.baselines.sdk_client",
                        sdk_csv,
                        srv.url,
                        work,
                        f"{name}-sdk-{r}",
                        size,
                        "--window",
                        str(concurrency),
                    )
                )
    ratios = {"aiohttp_loop": _paired_ratio(runs, "bulkops", "aiohttp_loop")}
    if SDK_AVAILABLE:
        ratios["sdk"] = _paired_ratio(runs, "bulkops", "sdk")
    return {
        "scenario": name,
        "params": {"rows": rows, "sdk_rows": sdk_rows, "latency": latency, "concurrency": concurrency},
        "bound": {"kind": "req/s of the minimal aiohttp loop", "value": _median_rps(runs, "aiohttp_loop")},
        "runs": runs,
        "ratio_to_bound": ratios["aiohttp_loop"],
        "ratios": ratios,
    }


def _first_project(csv: Path, n: int) -> dict[str, int]:
    with open(csv, encoding="utf-8") as fh:
        fh.readline()
        return {fh.readline().split(",", 1)[0]: n}


def scenario_cpu(work: Path, size: Size) -> list[dict[str, Any]]:
    """Target 4: zero latency, c=64, vs the minimal loop and the SDK; 50 ms, c=256, vs the SDK."""
    zero = _side_by_side(
        "cpu", work, size, latency=0.0, concurrency=64, rows=size.cpu_rows, sdk_rows=size.sdk_rows
    )
    zero["description"] = "fast responder, zero latency, no limits, concurrency 64"
    zero["targets"] = [target("bulkops / aiohttp loop", zero["ratios"]["aiohttp_loop"], ">=", 0.8)]
    slow = _side_by_side(
        "cpu-50ms", work, size, latency=0.05, concurrency=256, rows=size.cpu_rows,
        sdk_rows=size.sdk_latency_rows,
    )  # fmt: skip
    slow["description"] = "fast responder, 50 ms latency, no limits, concurrency 256"
    slow["targets"] = []
    if SDK_AVAILABLE:
        zero["targets"].append(target("bulkops / SDK", zero["ratios"]["sdk"], ">=", 5.0))
        slow["targets"].append(target("bulkops / SDK", slow["ratios"]["sdk"], ">=", 25.0))
    return [zero, slow]


# -- signing ----------------------------------------------------------------------------------------------

_SIGN_BENCH = r"""
import json, statistics, sys, timeit, warnings
warnings.simplefilter("ignore")
from bulkops.cloud.auth import Credentials, auth_headers, signer_for
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer as SdkSigner

n, rounds = int(sys.argv[1]), int(sys.argv[2])
AK, SK = "BENCHAK0000000000001", "bench-secret-key-0000000000000000001"
PROJECT = "0123456789abcdef0123456789abcdef"
PATH = f"/v1/{PROJECT}/dev-servers/3fa85f64-5717-4562-b3fc-2c963f66afa6/stop"
HOST = "modelarts.cn-north-4.myhuaweicloud.com"
creds = Credentials(ak=AK, sk=SK)
signer = signer_for(creds)
sdk = SdkSigner(BasicCredentials(AK, SK))

def ours(now=None):
    return auth_headers(creds, signer, method="PUT", host=HOST, path=PATH, project_id=PROJECT, now=now)

def theirs(date=None):
    # What the SDK does per request: a request object, then sign() (X-Sdk-Date set by the SDK).
    headers = {"X-Project-Id": PROJECT, "Host": HOST}
    if date:
        headers["X-Sdk-Date"] = date
    request = SdkRequest(method="PUT", schema="https", host=HOST, resource_path=PATH, query_params=[],
                         header_params=headers, body=None)
    sdk.sign(request)
    return request.header_params

mine = ours(1_772_366_400.0)
identical = mine["Authorization"] == theirs(mine["X-Sdk-Date"])["Authorization"]
a, b = [], []
for _ in range(rounds):  # A B A B
    a.append(timeit.timeit(ours, number=n) / n)
    b.append(timeit.timeit(theirs, number=n) / n)
print(json.dumps({"bulkops_us": statistics.median(a) * 1e6, "sdk_us": statistics.median(b) * 1e6,
                  "identical": identical, "n": n, "rounds": rounds}))
"""


def scenario_signing(work: Path, size: Size) -> list[dict[str, Any]]:
    """Target 5: microseconds per signature, ours vs huaweicloudsdkcore's, one process on CPU 1."""
    if not SDK_AVAILABLE:
        return [{"scenario": "signing", "skipped": "huaweicloudsdkcore is not installed", "runs": []}]
    cmd = [harness.PYTHON, "-c", _SIGN_BENCH, str(size.sign_iterations), str(max(3, size.rounds * 2))]
    run = run_client(cmd, "signing", workdir=work, timeout=size.timeout)
    data = run.json_line()
    speedup = data["sdk_us"] / data["bulkops_us"]
    return [
        {
            "scenario": "signing",
            "description": "auth_headers() vs the SDK's Signer.sign() on the same PUT, alternating",
            "params": {"iterations": data["n"], "rounds": data["rounds"]},
            "bound": {"kind": "us per signature", "value": 5.0},
            "runs": [],
            "signing": data,
            "ratios": {"sdk": speedup},
            "targets": [
                target("us per signature", data["bulkops_us"], "<=", 5.0, "us"),
                target("speed-up over the SDK", speedup, ">=", 2.5, "x"),
                target("byte-identical Authorization", 1.0 if data["identical"] else 0.0, ">=", 1.0),
            ],
        }
    ]


# -- memory -----------------------------------------------------------------------------------------------


def scenario_memory(work: Path, size: Size) -> list[dict[str, Any]]:
    """Target 6: peak RSS of `bulkops stop` on 1,000,000 rows (and 100,000) against a zero-latency server."""
    runs: list[dict[str, Any]] = []
    with harness.fast_server(0.0, log=work / "memory-server.log") as srv:
        for rows in size.memory_rows:
            csv = work / f"memory-{rows}.csv"
            harness.make_csv(csv, projects=10, per_project=rows // 10, seed=17)
            run = _bulkops_run(f"memory-{rows}", csv, srv.url, work, rate=1e6, concurrency=64, size=size)
            run["input_rows"] = rows
            run["timeline"] = {}
            runs.append(run)
            csv.unlink(missing_ok=True)
    small, big = runs[0]["peak_rss_mb"], runs[-1]["peak_rss_mb"]
    growth = big / small if small else 0.0
    return [
        {
            "scenario": "memory",
            "description": "bulkops stop, 10 projects, zero latency (fast responder), concurrency 64",
            "params": {"rows": list(size.memory_rows)},
            "bound": {"kind": "peak RSS MB", "value": 120.0},
            "runs": runs,
            "ratios": {"rss_growth": growth},
            "targets": [
                target(f"peak RSS at {size.memory_rows[-1]:,} rows", big, "<=", 120.0, "MB"),
                target("peak RSS growth (largest / smallest)", growth, "<=", 1.3, "x"),
            ],
        }
    ]


# -- start-up ---------------------------------------------------------------------------------------------

_IMPORT_CHECK = (
    "import sys, bulkops; print(' '.join(m for m in ('aiohttp', 'bulkops.simulator', 'bulkops.cli.progress') "
    "if m in sys.modules))"
)


def _timed(cmd: list[str], work: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(cmd, cwd=work, env=harness.bench_env(), capture_output=True, timeout=60, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def scenario_startup(work: Path, size: Size) -> list[dict[str, Any]]:
    """Target 7: `bulkops --help` and a 10-row `--dry-run` within 0.3 s; `import bulkops` stays light."""
    csv = work / "startup.csv"
    harness.make_csv(csv, projects=1, per_project=10, seed=19)
    bulkops = str(Path(sys.executable).with_name("bulkops"))
    exe = [bulkops] if Path(bulkops).exists() else harness.BULKOPS
    help_s = _timed([*exe, "--help"], work, size.startup_repeats)
    dry_s = _timed([*exe, "stop", str(csv), "--dry-run", "--endpoint", "http://127.0.0.1:9"], work,
                   size.startup_repeats)  # fmt: skip
    python_s = _timed([sys.executable, "-c", "pass"], work, size.startup_repeats)
    imported = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK], capture_output=True, text=True, env=harness.bench_env(),
        timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    return [
        {
            "scenario": "startup",
            "description": "wall seconds, median of repeated runs (bare `python -c pass` for scale)",
            "params": {"repeats": size.startup_repeats},
            "bound": {"kind": "seconds", "value": 0.3},
            "runs": [],
            "startup": {"help_s": help_s, "dry_run_s": dry_s, "python_s": python_s, "imported": imported},
            "targets": [
                target("bulkops --help", help_s, "<=", 0.3, "s"),
                target("bulkops stop --dry-run (10 rows)", dry_s, "<=", 0.3, "s"),
                target("heavy modules after import bulkops", len(imported), "<=", 0),
            ],
        }
    ]


# -- smoke ------------------------------------------------------------------------------------------------


def scenario_smoke(work: Path, size: Size) -> list[dict[str, Any]]:
    """Every scenario at a tiny size: proves the harness works; its figures mean nothing."""
    from benchmarks.shared import scenario_shared  # these import this module: imported when called
    from benchmarks.throttle import scenario_throttle

    results: list[dict[str, Any]] = []
    for fn in (scenario_signing, scenario_startup, scenario_cpu, scenario_rate, scenario_throttle,
               scenario_shared):  # fmt: skip
        results.extend(fn(work, size))
    return results


SCENARIOS: dict[str, Callable[[Path, Size], list[dict[str, Any]]]] = {
    "rate": scenario_rate,
    "start": scenario_start,
    "adaptive": scenario_adaptive,
    "latency": scenario_latency,
    "cpu": scenario_cpu,
    "signing": scenario_signing,
    "memory": scenario_memory,
    "startup": scenario_startup,
}
