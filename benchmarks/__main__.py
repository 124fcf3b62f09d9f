"""`python -m benchmarks SCENARIO`: run scenarios side by side, print a table, write JSON and plots.

    python -m benchmarks all          # every scenario at the issue's sizes (about 10 minutes)
    python -m benchmarks cpu          # or: rate adaptive throttle latency cpu signing memory startup
                                      #     shared job
    python -m benchmarks smoke        # everything tiny, in seconds (CI); its figures mean nothing

Servers run in their own process pinned to CPU 0, clients in theirs pinned to CPU 1. Output goes to
benchmarks/results/ (or --out): <name>.json, <name>.md (the table), <name>-timeline.png, <name>-ratios.png,
and <case>-rates.png per `throttle` case (the learned rate per project over time; benchmarks/throttle.py),
shared-rates.png for `shared` (three runners without and with Redis; benchmarks/shared.py), job-scaling.png
for `job` (one job over 1, 2 and 4 processes; benchmarks/jobbench.py).
The exit status is 0 whether or not targets are met (benchmarks measure, they do not gate); --check
makes it 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import jobbench, output, scenarios, shared, throttle

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = {
    **scenarios.SCENARIOS,
    "throttle": throttle.scenario_throttle,
    "shared": shared.scenario_shared,
    "job": jobbench.scenario_job,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all", "smoke"])
    parser.add_argument("--out", type=Path, default=RESULTS, help="where JSON, table and plots go")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    size = scenarios.SMOKE if args.scenario == "smoke" else scenarios.FULL
    if args.scenario == "smoke":
        chosen = [scenarios.scenario_smoke]
    elif args.scenario == "all":
        chosen = list(SCENARIOS.values())
    else:
        chosen = [SCENARIOS[args.scenario]]

    started = time.time()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bulkops-bench-") as tmp:
        work = Path(tmp)
        for fn in chosen:
            print(f"running {fn.__name__.removeprefix('scenario_')} ...", file=sys.stderr, flush=True)
            results.extend(fn(work, size))

    name = args.scenario
    args.out.mkdir(parents=True, exist_ok=True)
    text = output.table(results)
    for extra in (throttle.details(results), shared.details(results), jobbench.details(results)):
        if extra:
            text += "\n\n" + extra
    payload = {
        "name": name,
        "command": "python -m benchmarks " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": output.machine(),
        "results": results,
        "table": text,
    }
    output.write_json(args.out / f"{name}.json", payload)
    (args.out / f"{name}.md").write_text(text + "\n", encoding="utf-8")
    plots: list[Path] = []
    if not args.no_plot:
        plots = output.plot(results, args.out, name) + throttle.plot_rates(results, args.out)
        plots += shared.plot_rates(results, args.out) + jobbench.plot(results, args.out)
    m = payload["machine"]
    print(f"\n{m['cpu']}, {m['cpus']} CPUs, Python {m['python']}, aiohttp {m['aiohttp']}")
    print(text)
    print(f"\nwrote {args.out / (name + '.json')}" + "".join(f", {p}" for p in plots))
    missed = [t for r in results for t in r.get("targets", []) if not t["met"]]
    if missed and args.check:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
