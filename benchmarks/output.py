"""The table, the JSON and the plots of a benchmark run.

table(results)   a Markdown table: one row per client and scenario (median of its rounds), then the
                 targets, each with its figure, its limit and whether it is met
write_json       benchmarks/results/<name>.json: machine, command, every run, every target
plot             benchmarks/results/<name>-timeline.png (rows finished per second, per project, for
                 each bulkops run) and <name>-ratios.png; skipped when matplotlib is not installed
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import uvloop

        uvloop_version: str | None = uvloop.__version__
    except ImportError:
        uvloop_version = None
    import aiohttp

    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "usable_cpus": sorted(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "aiohttp": aiohttp.__version__,
        "uvloop_in_fastserver": uvloop_version,
    }


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _clients(result: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for run in result.get("runs", []):
        key = run["client"] if "input_rows" not in run else f"{run['client']} ({run['input_rows']:,} rows)"
        grouped.setdefault(key, []).append(run)
    return list(grouped.items())


def table(results: list[dict[str, Any]]) -> str:
    """The Markdown table of a run (medians over rounds; ratios are medians of per-round ratios)."""
    head = (
        "| scenario | client | req/s | vs bound | vs aiohttp loop | vs SDK | 429 share | p50 ms | p99 ms "
        "| peak RSS MB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for result in results:
        name = result["scenario"]
        if result.get("skipped"):
            lines.append(f"| {name} | skipped: {result['skipped']} | | | | | | | | |")
            continue
        clients = _clients(result)
        if not clients:
            lines.append(_special_row(result))
            continue
        for client, runs in clients:
            rps = statistics.median(r["rps"] for r in runs)
            vs_bound = vs_loop = vs_sdk = "-"
            if client.startswith("bulkops"):
                per_client = result.get("client_ratio_to_bound")  # one figure per client (`shared`)
                bound = per_client.get(client) if per_client is not None else result.get("ratio_to_bound")
                vs_bound = _fmt(bound, 3) if bound is not None else "-"
                ratios = result.get("ratios", {})  # medians of per-round ratios (scenarios._paired_ratio)
                if "aiohttp_loop" in ratios:
                    vs_loop = f"{ratios['aiohttp_loop']:.2f}x"
                if "sdk" in ratios:
                    vs_sdk = f"{ratios['sdk']:.1f}x"
            share = statistics.median(r["throttle_share"] for r in runs)
            lines.append(
                f"| {name} | {client} | {_fmt(rps)} | {vs_bound} | {vs_loop} | {vs_sdk} | {share:.2%} "
                f"| {_fmt(statistics.median(r['p50_ms'] or 0 for r in runs), 1)} "
                f"| {_fmt(statistics.median(r['p99_ms'] or 0 for r in runs), 1)} "
                f"| {_fmt(max(r['peak_rss_mb'] for r in runs), 1)} |"
            )
    lines.append("")
    lines.append("| scenario | target | measured | limit | met |\n|---|---|---:|---:|---|")
    for result in results:
        for t in result.get("targets", []):
            unit = f" {t['unit']}" if t["unit"] else ""
            lines.append(
                f"| {result['scenario']} | {t['name']} | {t['value']:.3f}{unit} "
                f"| {t['op']} {t['limit']:g}{unit} | {'yes' if t['met'] else '**NO**'} |"
            )
    return "\n".join(lines)


def _special_row(result: dict[str, Any]) -> str:
    name = result["scenario"]
    if "signing" in result:
        s = result["signing"]
        return (
            f"| {name} | bulkops {s['bulkops_us']:.2f} us, SDK {s['sdk_us']:.2f} us per signature "
            f"| | | | {s['sdk_us'] / s['bulkops_us']:.1f}x | | | | |"
        )
    if "startup" in result:
        s = result["startup"]
        return (
            f"| {name} | --help {s['help_s']:.3f} s, --dry-run {s['dry_run_s']:.3f} s "
            f"(python -c pass {s['python_s']:.3f} s) | | | | | | | | |"
        )
    return f"| {name} | | | | | | | | | |"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write the run's JSON (timelines included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def plot(results: list[dict[str, Any]], out_dir: Path, name: str) -> list[Path]:
    """Draw the timeline and ratio plots; [] when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written: list[Path] = []
    timed = [
        (result["scenario"], run)
        for result in results
        for run in result.get("runs", [])
        if run["client"] == "bulkops" and run.get("timeline")
    ]
    seen: set[str] = set()
    timed = [(s, r) for s, r in timed if not (s in seen or seen.add(s))]  # first run of each scenario
    if timed:
        fig, axes = plt.subplots(len(timed), 1, figsize=(9, 2.6 * len(timed)), squeeze=False)
        for ax, (scenario, run) in zip(axes[:, 0], timed, strict=True):
            for project, counts in run["timeline"].items():
                ax.plot(range(len(counts)), counts, label=project[:8], linewidth=1)
            ax.set_title(f"{scenario}: rows finished per second, per project", fontsize=9)
            ax.set_xlabel("seconds since the first request", fontsize=8)
            ax.set_ylabel("rows/s", fontsize=8)
            if len(run["timeline"]) <= 8:
                ax.legend(fontsize=6, ncol=4)
        fig.tight_layout()
        path = out_dir / f"{name}-timeline.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    bars: list[tuple[str, float, float]] = []
    for result in results:
        for t in result.get("targets", []):
            if t["op"] == ">=" and t["limit"] > 0:
                bars.append((f"{result['scenario']}: {t['name']}", t["value"] / t["limit"], 1.0))
            elif t["op"] == "<=" and t["value"] > 0 and t["limit"] > 0:
                bars.append((f"{result['scenario']}: {t['name']}", t["limit"] / t["value"], 1.0))
    if bars:
        fig, ax = plt.subplots(figsize=(9, 0.35 * len(bars) + 1.2))
        labels = [b[0] for b in bars]
        values = [min(b[1], 10.0) for b in bars]
        colors = ["tab:green" if v >= 1.0 else "tab:red" for v in values]
        ax.barh(labels, values, color=colors)
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xlabel("headroom: measured / limit (>= 1 means the target is met; capped at 10)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.invert_yaxis()
        fig.tight_layout()
        path = out_dir / f"{name}-ratios.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
