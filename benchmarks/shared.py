"""`python -m benchmarks shared`: several runners sharing their limits through Redis (issue 14).

    shared      3 `bulkops stop` processes started together against one simulator (4 projects at 20/s,
                `--rate 20`), the CSV split into three disjoint thirds (every third line), without and
                with `--redis URL`, alternating (A B A B), `Size.shared_rounds` rounds; every variant gets
                a fresh simulator (every instance RUNNING again) and, with Redis, a fresh redis-server
    shared-cpu  the cost of a Redis acquire: the `cpu` scenario's set-up (fast responder, zero latency,
                concurrency 64, `--rate 1000000 --no-slow-start`) run by bulkops without and with
                `--redis`, alternating, `Size.rounds` rounds after one uncounted warm-up

The simulator is the user's (`bulkops simulate --no-auth ... --rate-limit 20/s --write-csv`, default status
mix): some rows are answered ModelArts.6307/6308 (already stopped/stopping) or ModelArts.6310 (an ERROR
instance's status does not allow a stop). Those are the simulator's own answers, not the limiter's doing:
they are counted apart from the rows failed for throttling (`bulkops.throttled`, or a 429's code).

Figures per variant (the three runners together): requests and 429s (the simulator's /_sim/stats), rows
failed for throttling, and throughput as a fraction of the ideal, `rows / (projects x 20/s)` seconds
(what the server lets through, with no credit for its initial bucket), over two spans: the wall clock
from the launch to the last exit, and the reports' span, from the earliest report's start (its sidecar
`R.meta.json`, `started`: after Python's start-up) to the latest record's `finished_at`.

Targets, with Redis: 429s at most 1 % of requests, no row failed for throttling, throughput over the
reports' span at least 0.93 of the ideal; `shared-cpu`: bulkops with `--redis` at least 0.7x its req/s
without (the median of per-round ratios). The simulator cannot log request times (`bulkops simulate
--help`), so benchmarks/results/shared-rates.png plots per project the rows finished per second (each
row's last request: with zero latency, the requests the gateway let through) from the reports'
`finished_at`, the 429s per second from the runners' `bulkops.stop.throttled` debug events, and the limit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import IO, Any

from benchmarks import harness
from benchmarks.baselines.common import percentile
from benchmarks.scenarios import Size, _bulkops_run, _first_project, _median_rps, _paired_ratio, target

PROJECTS = 4
LIMIT = 20  # requests per second per project, the simulator's and each runner's --rate
RUNNERS = 3
LOCAL, SHARED = "bulkops x3", "bulkops x3 --redis"
CPU_LOCAL, CPU_SHARED = "bulkops", "bulkops --redis"
#: A failed row is the limiter's failure when bulkops gave its project up for 429s or a 429 ended it.
THROTTLE_CODES = frozenset({"bulkops.throttled", "APIG.0308", "APIGW.0308"})


def unavailable() -> str | None:
    """Why the Redis scenarios cannot run here (None when they can)."""
    if harness.redis_binary() is None:
        return "redis-server is not installed"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install -e '.[redis]')"
    return None


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def split_thirds(csv: Path, work: Path, prefix: str) -> list[Path]:
    """The CSV's rows dealt into RUNNERS disjoint files (row i to file i % RUNNERS), header on each."""
    with open(csv, encoding="utf-8") as fh:
        header, *rows = fh.readlines()
    paths = [work / f"{prefix}-{k}.csv" for k in range(RUNNERS)]
    for k, path in enumerate(paths):
        path.write_text(header + "".join(rows[k::RUNNERS]), encoding="utf-8")
    return paths


def launch_together(cmds: list[list[str]], names: list[str], work: Path, timeout: float) -> dict[str, Any]:
    """Start every command at once (clients pinned to CPU 1), wait for all (bounded by `timeout`).

    Returns the wall seconds from the launch to the last exit and, per process, its exit code, wall
    seconds and peak RSS. Every process still running at the end (a timeout, an error) is killed."""
    procs: list[subprocess.Popen[bytes]] = []
    files: list[IO[bytes]] = []
    done: dict[int, dict[str, Any]] = {}
    started = time.perf_counter()
    try:
        for cmd, name in zip(cmds, names, strict=True):
            out, err = open(work / f"{name}.out", "wb"), open(work / f"{name}.err", "wb")  # noqa: SIM115
            files += [out, err]
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=harness.bench_env(), cwd=work)
            procs.append(proc)
            harness.pin(proc.pid, harness.CLIENT_CPU)
        deadline = started + timeout
        while len(done) < len(procs):
            for i, proc in enumerate(procs):
                if i in done:
                    continue
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    done[i] = {
                        "name": names[i],
                        "exit": proc.returncode,
                        "wall_s": time.perf_counter() - started,
                        "peak_rss_mb": usage.ru_maxrss / 1024,
                    }
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{names}: not all done after {timeout:g} s")
            time.sleep(0.01)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                proc.wait(10)
        for fh in files:
            fh.close()
    return {"wall_s": max(d["wall_s"] for d in done.values()), "processes": [done[i] for i in sorted(done)]}


def _throttle_times(stderr: str) -> list[tuple[str, float]]:
    """(project, epoch) of every `bulkops.stop.throttled` debug event in a runner's JSON log."""
    times = []
    for line in stderr.splitlines():
        if '"bulkops.stop.throttled"' not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        times.append((rec["project_id"], _epoch(rec["timestamp"])))
    return times


def _per_second(times: dict[str, list[float]], t0: float, seconds: int) -> dict[str, list[int]]:
    counts = {}
    for project, ts in sorted(times.items()):
        row = [0] * seconds
        for t in ts:
            row[max(0, min(seconds - 1, int(t - t0)))] += 1
        counts[project] = row
    return counts


def read_reports(reports: list[Path], stderrs: list[str]) -> dict[str, Any]:
    """The runners' reports and logs together: outcomes, failures by kind, spans, per-second counts."""
    starts = [_epoch(json.loads(Path(f"{r}.meta.json").read_text())["started"]) for r in reports]
    outcomes: Counter[str] = Counter()
    other: Counter[str] = Counter()
    throttled_rows = 0
    finished: dict[str, list[float]] = defaultdict(list)
    latencies: list[float] = []
    for report in reports:
        with open(report, encoding="utf-8") as fh:
            for rec in map(json.loads, fh):
                outcomes[rec["outcome"]] += 1
                finished[rec["project_id"]].append(_epoch(rec["finished_at"]))
                latencies.append(rec["elapsed_ms"] / 1000)
                if rec["outcome"] != "failed":
                    continue
                if rec.get("error_code") in THROTTLE_CODES or rec.get("http_status") == 429:
                    throttled_rows += 1
                else:
                    other[str(rec.get("error_code"))] += 1
    t0 = min(starts)
    t1 = max((t for ts in finished.values() for t in ts), default=t0)
    seconds = int(t1 - t0) + 1
    refusals: dict[str, list[float]] = defaultdict(list)
    for stderr in stderrs:
        for project, t in _throttle_times(stderr):
            refusals[project].append(t)
    latencies.sort()
    return {
        "rows": sum(outcomes.values()),
        "outcomes": dict(outcomes),
        "failed_throttled": throttled_rows,
        "failed_other": dict(other),
        "report_span_s": max(t1 - t0, 1e-3),
        "start_spread_s": max(starts) - t0,
        "p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
        "per_second": _per_second(finished, t0, seconds),
        "throttled_per_second": _per_second(refusals, t0, seconds),
    }


def run_variant(variant: str, rnd: int, work: Path, size: Size) -> dict[str, Any]:
    """One variant of one round: a fresh simulator (and Redis), three runners at once, their figures."""
    per_project = size.shared_rows_per_project
    name = f"shared-{'redis' if variant == SHARED else 'local'}-{rnd}"
    csv = work / f"{name}.csv"
    sim_cmd = [
        *harness.BULKOPS, "simulate", "--no-auth", "--port", "0", "--seed", "7", "--projects", str(PROJECTS),
        "--instances-per-project", str(per_project), "--rate-limit", f"{LIMIT}/s", "--write-csv", str(csv),
    ]  # fmt: skip
    load_before = _load()
    with (
        harness.server(sim_cmd, "simulator", log=work / f"{name}-server.log") as sim,
        harness.redis_server(work) if variant == SHARED else contextlib.nullcontext("") as redis_url,
    ):
        thirds = split_thirds(csv, work, name)
        reports = [work / f"{name}-{k}.jsonl" for k in range(RUNNERS)]
        extra = ["--redis", redis_url] if redis_url else []
        options = ["--endpoint", sim.url, "--rate", str(LIMIT), "--yes", "--no-progress", *extra]
        options += ["--log-level", "debug", "--log-format", "json"]  # debug: a line for every 429
        cmds = [
            [*harness.BULKOPS, "stop", str(third), "--report", str(report), *options]
            for third, report in zip(thirds, reports, strict=True)
        ]
        names = [f"{name}-runner{k}" for k in range(RUNNERS)]
        launched = launch_together(cmds, names, work, size.timeout)
        stats = sim.stats()
    stderrs = [(work / f"{n}.err").read_text(errors="replace") for n in names]
    for proc, stderr in zip(launched["processes"], stderrs, strict=True):
        if proc["exit"] not in (0, 1):
            raise RuntimeError(f"{proc['name']}: bulkops exited {proc['exit']}: {stderr[-2000:]}")
    if stats is None:
        raise RuntimeError(f"{name}: the simulator's /_sim/stats did not answer")
    with open(csv, encoding="utf-8") as fh:
        input_rows = sum(1 for _ in fh) - 1
    figures = read_reports(reports, stderrs)
    ideal = input_rows / (PROJECTS * LIMIT)
    totals = stats["totals"]
    requests, throttled = totals["requests"], totals["throttled"]
    return {
        "client": variant,
        "process": name,
        "round": rnd,
        "exit": [p["exit"] for p in launched["processes"]],
        "rows": figures["rows"],
        "missing_rows": input_rows - figures["rows"],
        "requests": requests,
        "elapsed_s": figures["report_span_s"],
        "wall_s": launched["wall_s"],
        "process_wall_s": launched["wall_s"],
        "rps": figures["rows"] / figures["report_span_s"],
        "throttled": throttled,
        "throttle_share": throttled / requests if requests else 0.0,
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "peak_rss_mb": max(p["peak_rss_mb"] for p in launched["processes"]),
        "ideal_s": ideal,
        "ratio_report": ideal / figures["report_span_s"],
        "ratio_wall": ideal / launched["wall_s"],
        "start_spread_s": figures["start_spread_s"],
        "outcomes": figures["outcomes"],
        "failed_throttled": figures["failed_throttled"],
        "failed_other": figures["failed_other"],
        "per_project": {
            p: {"requests": s["requests"], "throttled": s["throttled"]} for p, s in stats["projects"].items()
        },
        "per_second": figures["per_second"],
        "throttled_per_second": figures["throttled_per_second"],
        "runners": launched["processes"],
        "load_avg": {"before": load_before, "after": _load()},
    }


def _median(runs: list[dict[str, Any]], variant: str, key: str) -> float:
    values = [r[key] for r in runs if r["client"] == variant]
    return statistics.median(values) if values else 0.0


def scenario_shared_runners(work: Path, size: Size) -> dict[str, Any]:
    """Part 1: three runners, without and with Redis, alternating, fresh servers for each."""
    runs: list[dict[str, Any]] = []
    for rnd in range(size.shared_rounds):
        for variant in (LOCAL, SHARED):
            runs.append(run_variant(variant, rnd, work, size))
    rows = PROJECTS * size.shared_rows_per_project
    ideal = rows / (PROJECTS * LIMIT)
    shared = [r for r in runs if r["client"] == SHARED]
    return {
        "scenario": "shared",
        "description": (
            f"{RUNNERS} runners started together on disjoint thirds of {rows:,} rows, {PROJECTS} projects "
            f"at {LIMIT}/s, --rate {LIMIT}, without and with --redis (fresh simulator and Redis each)"
        ),
        "params": {
            "projects": PROJECTS,
            "rows": rows,
            "limit": f"{LIMIT}/s",
            "rate": LIMIT,
            "runners": RUNNERS,
            "rounds": size.shared_rounds,
            "latency": 0.0,
        },
        "bound": {"kind": "ideal seconds (rows / (projects x limit))", "value": ideal},
        "runs": runs,
        "client_ratio_to_bound": {v: _median(runs, v, "ratio_report") for v in (LOCAL, SHARED)},
        "ratios": {
            "redis_over_local_rps": _median(runs, SHARED, "rps") / max(_median(runs, LOCAL, "rps"), 1e-9)
        },
        "targets": [
            target("429 share, with Redis", _median(runs, SHARED, "throttle_share"), "<=", 0.01),
            target(
                "rows failed for throttling (+ missing), with Redis",
                sum(r["failed_throttled"] + r["missing_rows"] for r in shared),
                "<=",
                0,
            ),
            target(
                "throughput / ideal (reports' span), with Redis",
                _median(runs, SHARED, "ratio_report"),
                ">=",
                0.93,
            ),
        ],
    }


def scenario_shared_cpu(work: Path, size: Size) -> dict[str, Any]:
    """Part 2: the CPU-bound `cpu` set-up, bulkops without and with --redis, alternating."""
    rows = size.cpu_rows
    csv = work / "shared-cpu.csv"
    harness.make_csv(csv, projects=1, per_project=rows, seed=13)
    warm = work / "shared-cpu-warm.csv"
    harness.trim_csv(csv, warm, _first_project(csv, min(rows, 2000)))
    runs: list[dict[str, Any]] = []
    load_before = _load()
    common: dict[str, Any] = {"rate": 1e6, "concurrency": 64, "size": size, "slow_start": False}
    with (
        harness.fast_server(0.0, log=work / "shared-cpu-server.log") as srv,
        harness.redis_server(work) as redis_url,
    ):
        redis = ("--redis", redis_url)
        _bulkops_run("shared-cpu-warm-up", warm, srv.url, work, extra=redis, **common)  # not counted
        for r in range(size.rounds):  # A B A B
            runs.append(_bulkops_run(f"shared-cpu-local-{r}", csv, srv.url, work, client=CPU_LOCAL, **common))
            runs.append(
                _bulkops_run(
                    f"shared-cpu-redis-{r}", csv, srv.url, work, client=CPU_SHARED, extra=redis, **common
                )
            )
    ratio = _paired_ratio(runs, CPU_SHARED, CPU_LOCAL)
    return {
        "scenario": "shared-cpu",
        "description": "fast responder, zero latency, concurrency 64, --rate 1000000 --no-slow-start, "
        "bulkops without and with --redis",
        "params": {"rows": rows, "latency": 0.0, "concurrency": 64, "rounds": size.rounds},
        "bound": {"kind": "req/s of bulkops without Redis", "value": _median_rps(runs, CPU_LOCAL)},
        "runs": runs,
        "client_ratio_to_bound": {CPU_SHARED: ratio},
        "ratios": {"local": ratio},
        "load_avg": {"before": load_before, "after": _load()},
        "targets": [target("--redis / local req/s", ratio, ">=", 0.7, "x")],
    }


def scenario_shared(work: Path, size: Size) -> list[dict[str, Any]]:
    """Issue 14: runners sharing limits through Redis; the cost of a Redis acquire when CPU-bound."""
    why = unavailable()
    if why is not None:
        return [{"scenario": s, "skipped": why, "runs": []} for s in ("shared", "shared-cpu")]
    return [scenario_shared_runners(work, size), scenario_shared_cpu(work, size)]


# -- output -------------------------------------------------------------------------------------------------


def details(results: list[dict[str, Any]]) -> str:
    """A Markdown table of every `shared` round ('' when there is none)."""
    lines = [
        "| shared round | variant | rows | requests | 429s | 429 share | failed: throttling | failed: other "
        "(simulator) | wall s | reports' span s | ideal s | / ideal (wall) | / ideal (reports) | load avg |",
        "|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        if result["scenario"] != "shared" or result.get("skipped"):
            continue
        for run in result["runs"]:
            other = ", ".join(f"{n} {code}" for code, n in sorted(run["failed_other"].items())) or "0"
            load = run["load_avg"]["before"][0]
            lines.append(
                f"| {run['round']} | {run['client']} | {run['rows']:,} | {run['requests']:,} "
                f"| {run['throttled']:,} | {run['throttle_share']:.2%} "
                f"| {run['failed_throttled'] + run['missing_rows']} | {other} | {run['wall_s']:.1f} "
                f"| {run['elapsed_s']:.1f} | {run['ideal_s']:.1f} | {run['ratio_wall']:.3f} "
                f"| {run['ratio_report']:.3f} | {load:.2f} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def plot_rates(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """benchmarks/results/shared-rates.png: per variant (its first round), per project, rows finished and
    429s per second against the limit; [] without matplotlib or without a `shared` result."""
    result = next((r for r in results if r["scenario"] == "shared" and r.get("runs")), None)
    if result is None:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    firsts = [next(r for r in result["runs"] if r["client"] == v) for v in (LOCAL, SHARED)]
    span = max(len(next(iter(r["per_second"].values()), [])) for r in firsts)
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.4), sharex=True, squeeze=False)
    for ax, run in zip(axes[:, 0], firsts, strict=True):
        for project, counts in run["per_second"].items():
            ax.plot([i + 0.5 for i in range(len(counts))], counts, linewidth=1, label=f"{project[:8]} rows/s")
        ax.axhline(LIMIT, color="black", linestyle="--", linewidth=1.2, label=f"limit {LIMIT}/s per project")
        ax.set_xlim(0, span)
        ax.set_ylim(0, 2.5 * LIMIT)
        ax.set_ylabel("rows finished per second", fontsize=8)
        refused = [sum(c) for c in zip(*run["throttled_per_second"].values(), strict=True)]
        twin = ax.twinx()  # 429s on their own scale: without Redis they outnumber the rows
        twin.bar([i + 0.5 for i in range(len(refused))], refused, width=0.8, color="tab:red", alpha=0.25)
        twin.set_ylim(0, max([*refused, 1]) * 1.1)
        twin.set_ylabel(f"429s per second, all projects ({run['throttled']:,} in all)", fontsize=7,
                        color="tab:red")  # fmt: skip
        twin.tick_params(labelsize=7, colors="tab:red")
        ax.set_zorder(twin.get_zorder() + 1)  # the rows' lines over the 429 bars
        ax.patch.set_visible(False)
        ax.set_title(
            f"{run['client']} (round {run['round']}): {run['rows']:,} rows, {run['requests']:,} requests, "
            f"{run['throttle_share']:.2%} 429s, {run['ratio_report']:.3f} of ideal (reports' span)",
            fontsize=9,
        )
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper right", ncol=3)
    axes[-1, 0].set_xlabel("seconds since the earliest runner's report start", fontsize=8)
    fig.suptitle(f"shared: {result['description']}", fontsize=8)
    fig.tight_layout()
    path = out_dir / "shared-rates.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]
