"""`python -m benchmarks job`: one job over 1, 2 and 4 processes on Redis Streams (issue 15).

    job-latency  a latency-bound cloud: the simulator answers every request 0.2 s late, no rate limit
                 (`--rate 1000 --no-slow-start`), `--concurrency 8` per process: one process can finish at
                 most 8 / 0.2 = 40 rows/s, so every process added should add as much
    job-rate     a rate-bound cloud: 4 projects at 20/s (`--rate 20`), `--concurrency 8` per process: the
                 gateway lets 80 rows/s through whoever asks, so more hands must neither help nor draw 429s

"N processes" is the coordinator (`bulkops stop CSV --redis URL --job NAME`, which works on rows itself)
plus N-1 `bulkops worker`s, started as soon as the coordinator has published the job. Every variant gets
a fresh simulator and a fresh redis-server. Figures: rows/s over the report's span (its sidecar's
`started` to the last `finished_at`), the wall time from the coordinator's launch to the last exit, the
simulator's requests and 429s (/_sim/stats), and the load average before each variant (two CPUs: the
servers pinned to CPU 0, every bulkops process to CPU 1).

Targets: latency-bound, 4 processes at least 2.5x the rows/s of 1 (ideal 4x, less start-up: a worker
joins after the job is published); rate-bound, 4 processes within 10 % of 1's rows/s and 429s at most 1 %
of requests, and within 10 % the other way too. benchmarks/results/job-scaling.png: rows/s per
process count, each cloud against its ideal.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from benchmarks import harness
from benchmarks.scenarios import Size, target
from benchmarks.shared import _epoch, _load, unavailable

PROJECTS = 4
LIMIT = 20  # rate-bound cloud: requests per second per project
LATENCY = 0.2  # latency-bound cloud: seconds per answer
CONCURRENCY = 8  # per process
HANDS = (1, 2, 4)
JOB = "bench"


def _launch(cmd: list[str], name: str, work: Path, files: list[IO[bytes]]) -> subprocess.Popen[bytes]:
    out, err = open(work / f"{name}.out", "wb"), open(work / f"{name}.err", "wb")  # noqa: SIM115
    files += [out, err]
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=harness.bench_env(), cwd=work)
    harness.pin(proc.pid, harness.CLIENT_CPU)
    return proc


def _wait_all(procs: list[subprocess.Popen[bytes]], deadline: float) -> float:
    """Wait for every process (bounded); the largest peak RSS (MB) among them."""
    peak = 0.0
    left = {p.pid: p for p in procs}
    while left:
        for pid, proc in list(left.items()):
            got, status, usage = os.wait4(pid, os.WNOHANG)
            if got:
                proc.returncode = os.waitstatus_to_exitcode(status)
                peak = max(peak, usage.ru_maxrss / 1024)
                del left[pid]
        if left and time.perf_counter() > deadline:
            raise RuntimeError(f"job processes still running after the timeout: {sorted(left)}")
        time.sleep(0.01)
    return peak


def _wait_for_job(redis_url: str, deadline: float) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        while not client.exists(f"bulkops:{{job:{JOB}}}:meta"):
            if time.monotonic() > deadline:
                raise RuntimeError("the coordinator did not publish the job")
            time.sleep(0.02)
    finally:
        client.close()


def run_job(cloud: str, hands: int, work: Path, size: Size) -> dict[str, Any]:
    """One variant: a fresh simulator and Redis, the coordinator and hands-1 workers, their figures."""
    name = f"job-{cloud}-{hands}"
    per_project = size.job_latency_rows_per_project if cloud == "latency" else size.job_rate_rows_per_project
    csv = work / f"{name}.csv"
    cloud_args = ["--latency", str(LATENCY)] if cloud == "latency" else ["--rate-limit", f"{LIMIT}/s"]
    sim_cmd = [
        *harness.BULKOPS, "simulate", "--no-auth", "--port", "0", "--seed", "7", "--projects", str(PROJECTS),
        "--instances-per-project", str(per_project), "--status-mix", "RUNNING=1", "--write-csv", str(csv),
        *cloud_args,
    ]  # fmt: skip
    rate = ["--rate", "1000", "--no-slow-start"] if cloud == "latency" else ["--rate", str(LIMIT)]
    load_before = _load()
    report = work / f"{name}.jsonl"
    files: list[IO[bytes]] = []
    procs: list[subprocess.Popen[bytes]] = []
    with (
        harness.server(sim_cmd, "simulator", log=work / f"{name}-server.log") as sim,
        harness.redis_server(work) as redis_url,
    ):
        started = time.perf_counter()
        try:
            coordinator = [
                *harness.BULKOPS, "stop", str(csv), "--endpoint", sim.url, *rate, "--yes", "--no-progress",
                "--report", str(report), "--redis", redis_url, "--job", JOB,
                "--concurrency", str(CONCURRENCY), "--log-format", "json",
            ]  # fmt: skip
            procs.append(_launch(coordinator, f"{name}-coordinator", work, files))
            _wait_for_job(redis_url, time.monotonic() + 30.0)
            worker = [*harness.BULKOPS, "worker", "--redis", redis_url, "--job", JOB, "--endpoint", sim.url,
                      "--concurrency", str(CONCURRENCY), "--log-format", "json"]  # fmt: skip
            for k in range(1, hands):
                procs.append(_launch(worker, f"{name}-worker{k}", work, files))
            rss = _wait_all(procs, time.perf_counter() + size.timeout)
            wall = time.perf_counter() - started
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            for fh in files:
                fh.close()
        stats = sim.stats()
    exits = [p.returncode for p in procs]
    if any(code != 0 for code in exits):
        err = (work / f"{name}-coordinator.err").read_text(errors="replace")
        raise RuntimeError(f"{name}: exits {exits}: {err[-2000:]}")
    if stats is None:
        raise RuntimeError(f"{name}: the simulator's /_sim/stats did not answer")
    t0 = _epoch(json.loads(Path(f"{report}.meta.json").read_text())["started"])
    with open(report, encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    t1 = max(_epoch(r["finished_at"]) for r in records)
    span = max(t1 - t0, 1e-3)
    lat = sorted(r["elapsed_ms"] for r in records)
    requests, throttled = stats["totals"]["requests"], stats["totals"]["throttled"]
    ideal_rps = PROJECTS * LIMIT if cloud == "rate" else hands * CONCURRENCY / LATENCY
    return {
        "client": f"bulkops x{hands}"
        + (f" (coordinator + {hands - 1} worker{'s' * (hands > 2)})" * (hands > 1)),
        "cloud": cloud,
        "hands": hands,
        "rows": len(records),
        "outcomes": {
            o: sum(1 for r in records if r["outcome"] == o) for o in {r["outcome"] for r in records}
        },
        "requests": requests,
        "throttled": throttled,
        "throttle_share": throttled / requests if requests else 0.0,
        "elapsed_s": span,
        "wall_s": wall,
        "rps": len(records) / span,
        "ideal_rps": ideal_rps,
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "peak_rss_mb": rss,
        "load_avg": {"before": load_before, "after": _load()},
    }


def _rps(runs: list[dict[str, Any]], hands: int) -> float:
    return float(next(r["rps"] for r in runs if r["hands"] == hands))


def scenario_job(work: Path, size: Size) -> list[dict[str, Any]]:
    """Issue 15: 1, 2 and 4 processes on one job, latency-bound and rate-bound."""
    why = unavailable()
    if why is not None:
        return [{"scenario": s, "skipped": why, "runs": []} for s in ("job-latency", "job-rate")]
    results = []
    for cloud in ("latency", "rate"):
        runs = [run_job(cloud, hands, work, size) for hands in HANDS]
        one, four = _rps(runs, 1), _rps(runs, 4)
        if cloud == "latency":
            rows = PROJECTS * size.job_latency_rows_per_project
            description = (f"{rows:,} rows, simulator --latency {LATENCY}, no rate limit, "
                           f"--concurrency {CONCURRENCY} per process")  # fmt: skip
            targets = [target("rows/s, 4 processes / 1", four / one, ">=", 2.5, "x")]
        else:
            rows = PROJECTS * size.job_rate_rows_per_project
            description = (
                f"{rows:,} rows, {PROJECTS} projects at {LIMIT}/s, --concurrency {CONCURRENCY} per process"
            )
            targets = [
                target("rows/s, 4 processes / 1", four / one, "<=", 1.1, "x"),
                target(
                    "429 share, 4 processes",
                    next(r["throttle_share"] for r in runs if r["hands"] == 4),
                    "<=",
                    0.01,
                ),
                target("rows/s, 4 processes / 1 (no worse)", four / one, ">=", 0.9, "x"),
            ]
        results.append({
            "scenario": f"job-{cloud}",
            "description": description,
            "params": {"rows": rows, "projects": PROJECTS, "concurrency": CONCURRENCY, "hands": list(HANDS)},
            "runs": runs,
            "client_ratio_to_bound": {r["client"]: r["rps"] / r["ideal_rps"] for r in runs},
            "targets": targets,
        })  # fmt: skip
    return results


def details(results: list[dict[str, Any]]) -> str:
    """A Markdown table of every `job` variant ('' when there is none)."""
    lines = [
        "| cloud | processes | rows | rows/s | ideal rows/s | report span s | wall s | requests | 429s "
        "| load avg before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        if not result["scenario"].startswith("job-") or result.get("skipped"):
            continue
        for r in result["runs"]:
            lines.append(
                f"| {r['cloud']}-bound | {r['hands']} | {r['rows']:,} | {r['rps']:.1f} "
                f"| {r['ideal_rps']:.0f} "
                f"| {r['elapsed_s']:.1f} | {r['wall_s']:.1f} | {r['requests']:,} | {r['throttled']:,} "
                f"| {r['load_avg']['before'][0]:.2f} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def plot(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """benchmarks/results/job-scaling.png: rows/s per process count, per cloud, against the ideal."""
    found = [r for r in results if r["scenario"].startswith("job-") and r.get("runs")]
    if not found:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    fig, axes = plt.subplots(1, len(found), figsize=(5 * len(found), 3.6), squeeze=False)
    for ax, result in zip(axes[0], found, strict=True):
        runs = result["runs"]
        hands = [r["hands"] for r in runs]
        ax.bar([str(h) for h in hands], [r["rps"] for r in runs], color="tab:blue", label="measured rows/s")
        ax.plot([str(h) for h in hands], [r["ideal_rps"] for r in runs], "k--", marker="o", label="ideal")
        for i, r in enumerate(runs):
            ax.annotate(f"{r['rps']:.0f} rows/s\n{r['throttled']} 429s", (i, r["rps"] * 0.95), ha="center",
                        va="top", fontsize=7, color="white")  # fmt: skip
        ax.set_title(f"{result['scenario']}: {result['description']}", fontsize=7)
        ax.set_xlabel("processes (the coordinator + workers)", fontsize=8)
        ax.set_ylabel("rows/s (report's span)", fontsize=8)
        ax.set_ylim(0, max(max(r["ideal_rps"], r["rps"]) for r in runs) * 1.25)
        ax.legend(fontsize=7, loc="upper left")
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    path = out_dir / "job-scaling.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]
