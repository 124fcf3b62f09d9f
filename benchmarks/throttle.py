"""`python -m benchmarks throttle`: finding unknown server limits from 429s (issue 11), a matrix of cases.

Every case runs `bulkops stop` against the simulator (50 ms latency, concurrency 64, rows sorted by
project, every instance RUNNING) whose per-project limits bulkops is not told (no --rates-file), with
`--log-level debug`, so that its `bulkops.rate.lowered` / `bulkops.rate.raised` lines give the rate it
learned per project over time and `bulkops.stop.throttled` lines say when each 429 came. Each project gets
`Size.throttle_seconds` (30 s at full size) of its own limit in rows.

    throttle-2x      4 projects at 5, 10, 25, 50/s, --rate 100 (2x the highest limit)
    throttle-10x     the same, --rate 500
    throttle-100x    the same, --rate 5000
    throttle-bare    the same limits, 429 messages without the `limit:N,time:...` hint, --rate 100
    throttle-minute  1 project at 600/minute, 900 rows (30 s after its first window), --rate 100
    throttle-drop    4 projects at 25/s, --rate 50, every limit halves 15 s after the first request

Targets (the issue's): zero rows failed (any row not accepted, from the report); 429s (the simulator's own
/_sim/stats count over its request count) at most 2 % of requests where the limit is steady and hinted, 5 %
where it changes or the message is bare; throughput at least 0.93 of the ideal (see `ideal_seconds`).

Each case also draws benchmarks/results/<case>-rates.png: per project, the learned rate over time (solid
steps), the server's limit (dashed, following a limit change), the rows finished per second, and a tick
for every 429.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.harness import bulkops_stop, report_metrics, run_client
from benchmarks.scenarios import Size, _per_second, _run_record, target

LATENCY = 0.05
CONCURRENCY = 64
UNEQUAL = ("5/s", "10/s", "25/s", "50/s")


@dataclass(frozen=True)
class Case:
    """One row of the matrix."""

    name: str
    description: str
    limits: tuple[str, ...]
    rate: float
    max_429_share: float
    bare: bool = False
    #: (seconds after the first request, factor): the simulator's --limit-change
    schedule: tuple[tuple[float, float], ...] = ()
    #: rows of each project = this many windows' worth beyond the first (per-minute case), else None
    minute_rows: int | None = None


def cases(size: Size) -> list[Case]:
    """The matrix at `size` (the drop comes halfway through the rows, as 15 s of 30 s at full size)."""
    s = size.throttle_seconds
    unequal = "4 projects at 5, 10, 25, 50/s (not told), rows = {s:g} s of each, 50 ms, --rate {rate:g}"
    return [
        Case("throttle-2x", unequal.format(s=s, rate=100), UNEQUAL, 100.0, 0.02),
        Case("throttle-10x", unequal.format(s=s, rate=500), UNEQUAL, 500.0, 0.02),
        Case("throttle-100x", unequal.format(s=s, rate=5000), UNEQUAL, 5000.0, 0.02),
        Case(
            "throttle-bare",
            unequal.format(s=s, rate=100) + ", bare 429 messages (no limit hint)",
            UNEQUAL,
            100.0,
            0.05,
            bare=True,
        ),
        Case(
            "throttle-minute",
            f"1 project at 600/minute (a bucket of 600, 10/s refill), rows = 600 + {s:g} s of 10/s, "
            "50 ms, --rate 100",
            ("600/min",),
            100.0,
            0.02,
            minute_rows=round(600 + 10 * s),
        ),
        Case(
            "throttle-drop",
            f"4 projects at 25/s, rows = {s:g} s of 25/s, 50 ms, --rate 50, every limit halves "
            f"{s / 2:g} s after the first request",
            ("25/s",) * 4,
            50.0,
            0.05,
            schedule=((s / 2, 0.5),),
        ),
    ]


def _rows(case: Case, size: Size) -> list[int]:
    if case.minute_rows is not None:
        return [case.minute_rows] * len(case.limits)
    return [round(size.throttle_seconds * _per_second(lim)[0] / _per_second(lim)[1]) for lim in case.limits]


def _scaled(n: int, factor: float) -> int:
    """A limit of n scaled by the simulator's --limit-change factor (its own rounding: 12.5 -> 12)."""
    return max(1, round(n * factor))


def limit_steps(limit: str, schedule: tuple[tuple[float, float], ...]) -> list[tuple[float, float]]:
    """The server's limit of one project over time, as requests/s: [(from second, rate), ...]."""
    n, window = _per_second(limit)
    steps = [(0.0, n / window)]
    for at, factor in sorted(schedule):
        steps.append((at, _scaled(n, factor) / window))
    return steps


def ideal_seconds(limit: str, rows: int, schedule: tuple[tuple[float, float], ...] = ()) -> float:
    """Seconds a client sending at exactly the server's limit needs for `rows` of one project.

    The server's bucket for `N/window` holds N tokens, full at the first request, and refills at
    N/window per second; an ideal client sends the N at once and then one request per token as it is
    earned, so it has sent N + rate * t by time t: a steady limit needs (rows - N) / rate, for a
    per-minute limit too (600/min, 900 rows: (900 - 600) / 10 = 30 s). A `--limit-change at=factor`
    rescales the bucket at `at` seconds (the simulator's clock starts at its first request, the same
    moment as the ideal client's): from then on it refills at max(1, round(N * factor)) / window, and
    the tokens it held are capped at the new size. The ideal client holds none at that moment (it spent
    each as it came), so its count simply goes on at the new rate: with 25/s halved at 15 s, 750 rows
    are 25 + 25 * 15 = 400 by 15 s, and the other 350 at 12/s (round(12.5) = 12) take 29.2 s more:
    44.2 s. A project whose rows are all within the first bucket needs 0 s.
    """
    n = _per_second(limit)[0]
    sent = float(n)
    if rows <= sent:
        return 0.0
    steps = limit_steps(limit, schedule)
    for i, (start, rate) in enumerate(steps):
        end = steps[i + 1][0] if i + 1 < len(steps) else float("inf")
        if sent + rate * (end - start) >= rows:
            return start + (rows - sent) / rate
        sent += rate * (end - start)
    raise AssertionError("unreachable: the last step never ends")


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def _first_request(report: Path) -> float:
    """When the earliest row's first request left (the t0 of `report_metrics`' timeline)."""
    with open(report, encoding="utf-8") as fh:
        starts = (_epoch(rec["finished_at"]) - rec["elapsed_ms"] / 1000 for rec in map(json.loads, fh))
        return min(starts, default=0.0)


def rate_log(stderr: str, t0: float) -> tuple[dict[str, list[list[float]]], dict[str, list[float]]]:
    """From bulkops' JSON debug log: the learned rate per project [[second, rate], ...] and 429 seconds.

    Seconds count from `t0`; "*" is the credential's (global) bucket when a shared-quota hint made one.
    """
    rates: dict[str, list[list[float]]] = defaultdict(list)
    throttled: dict[str, list[float]] = defaultdict(list)
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        event = rec.get("event")
        if event not in ("bulkops.rate.lowered", "bulkops.rate.raised", "bulkops.stop.throttled"):
            continue
        t = round(_epoch(rec["timestamp"]) - t0, 3)
        if event == "bulkops.stop.throttled":
            throttled[rec["project_id"]].append(t)
        else:
            rates[rec["project_id"]].append([t, float(rec["rate"])])
    return dict(rates), dict(throttled)


def _learned_summary(stderr: str) -> str:
    """bulkops' summary line `rates learned from 429s: ...`, project ids cut to 8 characters."""
    match = re.search(r"rates learned from 429s: (.*)", stderr)
    return re.sub(r"\b([0-9a-f]{8})[0-9a-f]{24}\b", r"\1", match[1].strip()) if match else ""


def run_case(case: Case, work: Path, size: Size) -> dict[str, Any]:
    """One case: simulator up, bulkops run to the end, figures and targets."""
    rows = _rows(case, size)
    projects = len(case.limits)
    full = work / f"{case.name}-all.csv"
    ids = harness.make_csv(full, projects=projects, per_project=max(rows), seed=7)
    csv = work / f"{case.name}.csv"
    harness.trim_csv(full, csv, dict(zip(ids, rows, strict=True)))
    sim_args = ["--seed", "7", "--projects", str(projects), "--instances-per-project", str(max(rows))]
    sim_args += ["--status-mix", "RUNNING=1", "--latency", str(LATENCY)]
    for project, limit in zip(ids, case.limits, strict=True):
        sim_args += ["--project-rate-limit", f"{project}={limit}"]
    if case.bare:
        sim_args.append("--bare-throttle")
    for at, factor in case.schedule:
        sim_args += ["--limit-change", f"{at:g}={factor:g}"]
    report = work / f"{case.name}.jsonl"
    report.unlink(missing_ok=True)
    with harness.simulator(sim_args, log=work / f"{case.name}-server.log") as sim:
        cmd = bulkops_stop(csv, sim.url, report, rate=case.rate, concurrency=CONCURRENCY, log_level="debug")
        run = run_client(cmd, case.name, workdir=work, timeout=size.timeout)
        stats = sim.stats()
    if run.returncode not in (0, 1):
        raise RuntimeError(f"{case.name}: bulkops exited {run.returncode}: {run.stderr[-2000:]}")
    if stats is None:
        raise RuntimeError(f"{case.name}: the simulator's /_sim/stats did not answer")
    metrics = report_metrics(report)
    t0 = _first_request(report)
    report.unlink(missing_ok=True)
    totals = stats["totals"]
    record = _run_record(run, "bulkops", metrics, requests=totals["requests"], throttled=totals["throttled"])
    accepted = metrics.get("outcomes", {}).get("accepted", 0)
    record["input_rows"] = sum(rows)
    record["failed_rows"] = sum(rows) - accepted  # any row not accepted, or missing from the report
    record["outcomes"] = metrics.get("outcomes", {})
    record["learned_rates_summary"] = _learned_summary(run.stderr)
    record["rate_trace"], record["throttle_times"] = rate_log(run.stderr, t0)
    record["per_project"] = {
        p: {
            "limit": lim,
            "rows": n,
            "requests": stats["projects"].get(p, {}).get("requests", 0),
            "throttled": stats["projects"].get(p, {}).get("throttled", 0),
            "ideal_s": ideal_seconds(lim, n, case.schedule),
            "limit_steps": limit_steps(lim, case.schedule),
        }
        for p, lim, n in zip(ids, case.limits, rows, strict=True)
    }
    ideal = max(v["ideal_s"] for v in record["per_project"].values())
    ratio = ideal / record["elapsed_s"] if record["elapsed_s"] else 0.0
    return {
        "scenario": case.name,
        "description": case.description,
        "params": {
            "limits": list(case.limits),
            "rows": rows,
            "rate": case.rate,
            "latency": LATENCY,
            "concurrency": CONCURRENCY,
            "bare_throttle": case.bare,
            "limit_change": [list(c) for c in case.schedule],
        },
        "bound": {"kind": "ideal seconds", "value": ideal},
        "runs": [record],
        "ratio_to_bound": ratio,
        "targets": [
            target("rows failed", record["failed_rows"], "<=", 0),
            target("429 share", record["throttle_share"], "<=", case.max_429_share),
            target("throughput / ideal", ratio, ">=", 0.93),
        ],
    }


def scenario_throttle(work: Path, size: Size) -> list[dict[str, Any]]:
    """Issue 11: unknown, unequal, bare, per-minute and changing limits; rows failed, 429 share, speed."""
    return [run_case(case, work, size) for case in cases(size)]


# -- output -------------------------------------------------------------------------------------------------


def details(results: list[dict[str, Any]]) -> str:
    """A Markdown table of the throttle cases' own figures ('' when there are none)."""
    lines = [
        "| case | rows | failed | requests | 429s | 429 share | ideal s | span s | throughput / ideal "
        "| rates learned (bulkops' summary) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        if not result["scenario"].startswith("throttle-"):
            continue
        for run in result["runs"]:
            lines.append(
                f"| {result['scenario']} | {run['input_rows']:,} | {run['failed_rows']} "
                f"| {run['requests']:,} | {run['throttled']:,} | {run['throttle_share']:.2%} "
                f"| {result['bound']['value']:.1f} "
                f"| {run['elapsed_s']:.1f} | {result['ratio_to_bound']:.3f} "
                f"| {run['learned_rates_summary'] or '-'} |"
            )
    return "\n".join(lines) if len(lines) > 2 else ""


def plot_rates(results: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per throttle case: learned rate, server limit, rows/s and 429s per project over time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written: list[Path] = []
    for result in results:
        if not result["scenario"].startswith("throttle-") or not result.get("runs"):
            continue
        run = result["runs"][0]
        projects = list(run["per_project"])
        span = max(run["elapsed_s"], 1.0)
        fig, axes = plt.subplots(
            len(projects), 1, figsize=(10, 2.3 * len(projects) + 0.6), sharex=True, squeeze=False
        )
        rate = result["params"]["rate"]
        for ax, project in zip(axes[:, 0], projects, strict=True):
            info = run["per_project"][project]
            steps = info["limit_steps"]
            top = 2.5 * max(r for _, r in steps)
            # the server's limit (dashed), as a step line to the end of the run
            xs = [s for s, _ in steps] + [span]
            ys = [r for _, r in steps] + [steps[-1][1]]
            ax.step(xs, ys, where="post", linestyle="--", color="black", linewidth=1.2, label="server limit")
            # the learned rate: --rate (paced at 99 %) until the first change
            trace = run["rate_trace"].get(project, [])
            first = next((t for t, r in trace if r < rate * 0.98), span)  # the first cut (a 429)
            tx = [0.0] + [t for t, _ in trace] + [span]
            ty = [rate * 0.99] + [r for _, r in trace] + [trace[-1][1] if trace else rate * 0.99]
            ax.step(tx, [min(y, top * 0.98) for y in ty], where="post", color="tab:blue", linewidth=1.6,
                    label="learned rate (bulkops' log; it logs no raise under 25 %)")  # fmt: skip
            if rate * 0.99 > top:
                ax.annotate(
                    f"--rate {rate:g} (off scale) until {first:.2f} s",
                    (0, top * 0.98),
                    xytext=(4, -10),
                    textcoords="offset points",
                    fontsize=7,
                    color="tab:blue",
                )
            counts = run["timeline"].get(project, [])
            peak = max(counts, default=0)
            label = "rows finished per second" + (f" (peak {peak}, clipped)" if peak > top else "")
            ax.plot([i + 0.5 for i in range(len(counts))], [min(c, top) for c in counts], color="tab:green",
                    linewidth=0.9, alpha=0.8, label=label)  # fmt: skip
            ticks = run["throttle_times"].get(project, [])
            if ticks:
                ax.plot(ticks, [top * 0.03] * len(ticks), "|", color="tab:red", markersize=8,
                        label=f"429 ({len(ticks)})")  # fmt: skip
            ax.set_ylim(0, top)
            ax.set_xlim(0, span)
            ax.set_ylabel("req/s", fontsize=8)
            ax.set_title(
                f"project {project[:8]}: limit {info['limit']}, {info['rows']} rows, "
                f"{info['throttled']} 429s of {info['requests']} requests",
                fontsize=8,
            )
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6, loc="upper right", ncol=2)
        axes[-1, 0].set_xlabel("seconds since bulkops' first request", fontsize=8)
        fig.suptitle(
            f"{result['scenario']}: {result['description']}\nspan {run['elapsed_s']:.1f} s, ideal "
            f"{result['bound']['value']:.1f} s, 429 share {run['throttle_share']:.2%}",
            fontsize=8,
        )
        fig.tight_layout()
        path = out_dir / f"{result['scenario']}-rates.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
