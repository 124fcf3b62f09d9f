"""`bulkops demo`: a whole bulk stop and the morning's start against the built-in simulator, offline.

It starts the simulator in-process with a small fleet (a few projects; most instances RUNNING, some already
STOPPED or STOPPING, a few in ERROR, some ids unknown), a per-project rate limit and a sprinkling of
faults (503s, dropped connections, stops applied whose answer was lost), signed with throwaway AK/SK
credentials. It writes the input CSV (adding a few bad rows and a duplicate, as real exports have), runs
exactly what `bulkops stop` runs, and prints the summary and where the report is. Then the morning after:
the report summarized (`bulkops report summarize`), and the instances the stop stopped started again from
its report (`bulkops start --from-report`), into a second report.

The demo exits 0 when the run finished with one record per row, even though some rows (unknown ids,
instances in ERROR, bad rows) rightly did not succeed: the stop's own exit status is shown in the output.
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
from pathlib import Path

import anyio
import click

from bulkops import logs
from bulkops.cli.report_cli import render_summary
from bulkops.cli.runner import run_stop
from bulkops.cloud.auth import Credentials
from bulkops.io.fromreport import acted_rows
from bulkops.io.report import ReportWriter
from bulkops.io.report_read import summarize
from bulkops.io.reportmeta import identify, write_meta
from bulkops.io.resume import utc_now
from bulkops.io.targets import read_targets
from bulkops.operations import START
from bulkops.options import Options, RateLimit, RetryPolicy
from bulkops.simulator import (
    AccessKey,
    FaultShares,
    InventorySpec,
    Limit,
    SimulatorConfig,
    run_simulator,
    write_csv,
)
from bulkops.summary import RunStats
from bulkops.wording import counted

_BAD_ROWS = (
    "0123456789abcdef0123456789abcdef,NOT-AN-ID\n"
    "0123456789abcdef0123456789abcdef,62383738-E52A-450A-9F84-F9E705402BE8\n"
    "../etc,62383738-e52a-450a-9f84-f9e705402be8\n"
)


@click.command("demo")
@click.option(
    "--dir",
    "workdir",
    default="bulkops-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the input CSV and the report are written.",
)
@click.option("--projects", default=4, show_default=True, type=click.IntRange(1, 50))
@click.option(
    "--instances",
    default=60,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Instances per project.",
)
@click.option(
    "--rate",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="The simulated per-project limit, and the rate bulkops is told to keep to.",
)
@click.option("--wait", is_flag=True, help="Also wait for every instance to reach STOPPED.")
@click.option("--seed", default=7, show_default=True, type=int)
def demo(workdir: str, projects: int, instances: int, rate: float, wait: bool, seed: int) -> None:
    """Rehearse a bulk stop end to end against the built-in simulator (no cloud account needed), then the
    morning's start of what it stopped, from its report."""
    logs.configure(fmt="console" if sys.stderr.isatty() else "json", level="warning")
    spec = InventorySpec(
        projects=projects,
        instances_per_project=instances,
        status_mix={"RUNNING": 0.8, "STOPPED": 0.1, "STOPPING": 0.05, "ERROR": 0.05},
        unknown_share=0.05,
        seed=seed,
    )
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    input_csv = folder / "demo-input.csv"
    report = folder / "demo-report.jsonl"
    morning = folder / "demo-start-report.jsonl"
    report.unlink(missing_ok=True)
    morning.unlink(missing_ok=True)
    rows = write_csv(spec, input_csv, order="project")
    first = input_csv.read_text(encoding="utf-8").splitlines()[1]
    with input_csv.open("a", encoding="utf-8") as fh:
        fh.write(_BAD_ROWS)
        fh.write(first + "\n")  # a duplicate of the first row
    click.echo(f"input: {input_csv} ({rows + 4} rows, including 3 bad rows and 1 duplicate)", err=True)
    # As `bulkops stop` does: the report's input recorded beside it, so `--resume` from other input refuses.
    # The start's report records the stop's report as its input (`--from-report`), in `_run`.
    write_meta(str(report), identify(str(input_csv)), utc_now())
    stats, started = anyio.run(_run, spec, input_csv, (report, morning), rate, wait)
    if started is not None:
        click.echo(f"reports: {report} (the stop), {morning} (the start)", err=True)
        click.echo(
            f"bulkops stop would exit {stats.exit_code()}, bulkops start {started.exit_code()}: rows with "
            f"unknown ids, instances in ERROR and bad rows do not succeed, as in real life.",
            err=True,
        )
    sys.exit(stats.exit_code() if stats.interrupted or started is None else 0)


async def _run(
    spec: InventorySpec, input_csv: Path, reports: tuple[Path, Path], rate: float, wait: bool
) -> tuple[RunStats, RunStats | None]:
    """The evening's stop, then (unless interrupted) the morning's start from its report."""
    report, morning = reports
    ak, sk = "DEMO" + secrets.token_hex(8).upper(), secrets.token_hex(20)
    config = SimulatorConfig(
        seed=spec.seed,
        inventory=spec,
        access_keys=(AccessKey(ak, sk),),
        project_limit=Limit(int(rate)),
        latency=0.02,
        jitter=0.03,
        stop_delay=2.0,
        faults=FaultShares(http_503=0.03, reset=0.01, applied_then_503=0.01),
        record_requests=False,
    )
    async with run_simulator(config) as sim:
        click.echo(
            f"simulator: {sim.url} with {counted(spec.projects, 'project')} x "
            f"{counted(spec.instances_per_project, 'instance')}, "
            f"limit {int(rate)}/s per project, 3% 503s, 1% dropped connections, 1% lost answers",
            err=True,
        )
        options = Options(
            endpoint=sim.url,
            credentials=Credentials(ak=ak, sk=sk),
            rate=RateLimit(float(int(rate))),
            concurrency=32,
            timeout=5.0,
            wait=wait,
            wait_timeout=60.0,
        )
        writer = ReportWriter.open(str(report), append=False)
        click.echo("\nThe evening: bulkops stop", err=True)
        stats = await run_stop(read_targets(input_csv, default_project=None), options, writer)
        click.echo(f"report: {report} ({counted(stats.rows, 'record')}, one per row)", err=True)
        if stats.interrupted:
            return stats, None
        click.echo(f"\nbulkops report summarize {report}", err=True)
        click.echo(render_summary(summarize(str(report)), str(report)), err=True)
        await anyio.sleep(config.stop_delay)  # the night: every stopping instance has stopped
        click.echo("\nThe morning, before the start: bulkops list", err=True)
        click.echo(await fleet_by_status(sim.url, options.credentials, sim.inventory.project_ids), err=True)
        click.echo(f"\nThe morning: bulkops start --from-report {report}", err=True)
        write_meta(str(morning), identify(str(report)), utc_now())
        rows = acted_rows(str(report))
        writer = ReportWriter.open(str(morning), append=False)
        started = await run_stop(rows, dataclasses.replace(options, operation=START), writer)
        return stats, started


async def fleet_by_status(url: str, credentials: Credentials | None, projects: list[str]) -> str:
    """What `bulkops list` finds in the projects, counted by status ("12 STOPPED, 3 ERROR")."""
    from collections import Counter

    from bulkops.cloud.api import DevServerClient
    from bulkops.engine.listing import ListFailed, ListPacing, list_servers

    counts: Counter[str] = Counter()
    pacing = ListPacing(RateLimit(5.0), RetryPolicy())
    async with DevServerClient(url, credentials) as client:
        for project in projects:
            try:
                async for server in list_servers(client, project, pacing):
                    counts[str(server.get("status"))] += 1
            except ListFailed as exc:
                return f"bulkops: error: {exc}"
    return ", ".join(f"{n} {status}" for status, n in counts.most_common()) or "no instances"
