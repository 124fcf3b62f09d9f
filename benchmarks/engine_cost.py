"""What bulkops' engine costs per row, without HTTP: CPU time, or instructions under valgrind.

    python -m benchmarks.engine_cost                      # CPU us per row, engine vs a minimal loop
    python -m benchmarks.engine_cost --instructions       # instructions per row (needs valgrind)

Why. Side by side on a 2-core VM, requests/s moves by 5-10 % from one round to the next, so a change
worth 2-3 % of a request cannot be seen there. This measures only what bulkops adds to a request: the
real `stop_instances` (reader, scheduler, buckets, workers, results) and report writer, with a client
that answers from memory after `--latency` seconds (parsing a real DevServer body with the real
`api._parse`), beside a minimal asyncio queue loop with the same fake client. No server, no sockets.

`--instructions` runs each side under `valgrind --tool=callgrind` at two sizes and reports the difference
per row, which leaves start-up out. Instruction counts repeat within about 0.5 % from run to run, so a
change of 1 % is visible; they do not see cache misses, so confirm a gain side by side
(`python -m benchmarks cpu`) before believing it. Each run takes about a minute.

How it moved (`--instructions` at its defaults: 50 ms, concurrency 256, 5,000 and 10,000 rows): the
engine 253k instructions per row before the changes of 2026-11-26 evening (frozen values, a verdict object
per answer, `json.loads` on bytes), 211k after; the minimal loop 121k and 107k (it shares the fake
client's `api._parse`). What the engine adds over the loop: 131k -> 103k.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import anyio

from benchmarks import harness
from bulkops import logs
from bulkops.cli.command_stop import event_loop_options, tuned_gc
from bulkops.cloud import api
from bulkops.engine import stop_instances
from bulkops.io.report import ReportWriter
from bulkops.io.targets import read_targets
from bulkops.models import Reply
from bulkops.options import Options, RateLimit
from bulkops.simulator import answers

_BODY = answers.instance_body("3fa85f64-5717-4562-b3fc-2c963f66afa6", "STOPPING", 1_772_366_400_000)


class FakeClient:
    """Answers every stop with a STOPPING instance after `latency` seconds; no socket."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    async def stop(self, project_id: str, instance_id: str) -> Reply:
        api.request_path(project_id, instance_id, "stop")
        await asyncio.sleep(self.latency)
        return api._parse(200, _BODY, "0123456789abcdef", None)

    async def show(self, project_id: str, instance_id: str) -> Reply:
        await asyncio.sleep(self.latency)
        return api._parse(200, _BODY, "0123456789abcdef", None)


async def _engine(csv: Path, out: IO[str], latency: float, concurrency: int) -> None:
    options = Options(endpoint="http://127.0.0.1:9", rate=RateLimit(1e6), concurrency=concurrency)
    writer = ReportWriter(out)
    targets = read_targets(csv, default_project=None)
    async with stop_instances(targets, options, client=FakeClient(latency)) as run:
        async for batch in run.batches():  # as `runner.run_stop` does
            writer.write_many(batch)
    writer.close()


async def _loop(csv: Path, out: IO[str], latency: float, concurrency: int) -> None:
    from benchmarks.baselines.common import rows

    client = FakeClient(latency)
    queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(maxsize=concurrency * 4)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            reply = await client.stop(*item)
            out.write(json.dumps({"project_id": item[0], "id": item[1], "status": reply.status}) + "\n")

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    for item in rows(str(csv)):
        await queue.put(item)
    for _ in workers:
        await queue.put(None)
    await asyncio.gather(*workers)


def _run_once(side: str, csv: Path, latency: float, concurrency: int) -> float:
    """CPU seconds of one run of `side` ("engine" or "loop")."""
    fn = _engine if side == "engine" else _loop
    with (
        tempfile.TemporaryDirectory(prefix="bulkops-engine-cost-") as tmp,
        open(Path(tmp) / "report.jsonl", "w", encoding="utf-8") as out,
    ):
        started = time.process_time()
        with tuned_gc():
            anyio.run(fn, csv, out, latency, concurrency, backend_options=event_loop_options())
        return time.process_time() - started


def _instructions(side: str, rows: int, args: argparse.Namespace, work: Path) -> int:
    csv = work / f"rows-{rows}.csv"
    if not csv.exists():
        harness.make_csv(csv, projects=1, per_project=rows, seed=13)
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "benchmarks.engine_cost", "--once", side, "--csv", str(csv),
        "--latency", str(args.latency), "--concurrency", str(args.concurrency),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    match = re.search(r"Collected : (\d+)", done.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind: {done.stderr[-500:]}")
    return int(match[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine_cost", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="alternating engine/loop runs (CPU time)")
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind")
    parser.add_argument("--once", choices=["engine", "loop"], help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logs.configure(fmt="json", level="warning")  # the engine's start/finish lines are not the output

    if args.once:  # one run, in a process of its own (under valgrind)
        _run_once(args.once, args.csv, args.latency, args.concurrency)
        return
    with tempfile.TemporaryDirectory(prefix="bulkops-engine-cost-") as tmp:
        work = Path(tmp)
        if args.instructions:
            small, large = max(1, args.rows // 4), max(2, args.rows // 2)
            for side in ("engine", "loop"):
                per_row = (
                    _instructions(side, large, args, work) - _instructions(side, small, args, work)
                ) / (large - small)
                print(f"{side}: {per_row:,.0f} instructions per row")
            return
        csv = work / "rows.csv"
        harness.make_csv(csv, projects=1, per_project=args.rows, seed=13)
        cpu: dict[str, list[float]] = {"engine": [], "loop": []}
        for _ in range(args.rounds):
            for side, values in cpu.items():
                values.append(_run_once(side, csv, args.latency, args.concurrency) / args.rows * 1e6)
        for side, values in cpu.items():
            values.sort()
            median, least = values[len(values) // 2], values[0]
            print(f"{side}: {median:.1f} us CPU per row (median of {len(values)}, min {least:.1f})")


if __name__ == "__main__":
    main()
