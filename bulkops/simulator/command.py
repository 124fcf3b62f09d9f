"""`bulkops simulate`: run the API simulator from the command line until Ctrl-C (or SIGTERM).

The command is a plain click command; the lead registers it into the `bulkops` group. It prints exactly one
line to standard output, flushed, once the server listens:

    bulkops simulator listening on http://127.0.0.1:PORT

so that a benchmark can start it as a subprocess and read its URL (`--port 0` picks a free port). A short
summary of the fleet and knobs goes to standard error. Credentials to accept are read from the environment,
never from arguments (arguments show up in `ps`): `HUAWEICLOUD_SDK_AK`/`HUAWEICLOUD_SDK_SK` (with
`HUAWEICLOUD_SDK_SECURITY_TOKEN`, which then becomes required), and `BULKOPS_AUTH_TOKEN` as an accepted
`X-Auth-Token`. `--no-auth` accepts every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import get_args

import click

from bulkops.cloud.auth import ENV_AK, ENV_AUTH_TOKEN, ENV_SECURITY_TOKEN, ENV_SK
from bulkops.simulator.app import run_simulator
from bulkops.simulator.command_args import (
    accepted_credentials,
    cannot_listen,
    check_port,
    parse_limit,
    parse_project_limits,
    parse_schedule,
)
from bulkops.simulator.config import FaultShares, SimulatorConfig
from bulkops.simulator.inputcsv import write_csv
from bulkops.simulator.inventory import DEFAULT_MIX, InventorySpec, Order, make_inventory
from bulkops.wording import counted

_DEFAULT_MIX = ",".join(f"{k}={v:g}" for k, v in DEFAULT_MIX.items())


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (keep it local).")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port; 0 picks a free one (read the URL from the first output line).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Seed of everything random: project and instance ids, statuses, faults, latency.",
)
@click.option(
    "--projects",
    default=3,
    show_default=True,
    type=click.IntRange(0),
    help="Number of generated projects (ids are 32 hex digits, fixed by --seed).",
)
@click.option(
    "--instances-per-project",
    default=100,
    show_default=True,
    type=click.IntRange(0),
    help="Generated instances per project. Memory does not grow with it: 1,000,000 is fine.",
)
@click.option(
    "--status-mix",
    default=_DEFAULT_MIX,
    show_default=True,
    help="Initial status shares of generated instances, NAME=SHARE,... (any API status).",
)
@click.option(
    "--inventory",
    "inventory_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Load the fleet from a JSON or CSV file (project_id,id,status) instead of generating it.",
)
@click.option(
    "--unknown-share",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1, max_open=True),
    help="Share of rows in the --write-csv file whose id does not exist (answered ModelArts.6309).",
)
@click.option(
    "--write-csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the matching input CSV (project_id,id) to PATH ('-' for stdout) before serving.",
)
@click.option(
    "--csv-order",
    type=click.Choice(get_args(Order)),
    default="project",
    show_default=True,
    help="Row order of --write-csv: grouped by project, round-robin across projects, or shuffled.",
)
@click.option("--csv-only", is_flag=True, help="Write the --write-csv file and exit without serving.")
@click.option(
    "--not-found-404-share",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of unknown ids (chosen per id) answered 404 instead of 400; both carry ModelArts.6309.",
)
@click.option(
    "--stop-delay",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds an instance stays STOPPING before it is STOPPED.",
)
@click.option(
    "--stop-failed-share",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of stops (chosen per instance) that end in STOP_FAILED instead of STOPPED.",
)
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds added to every answer.",
)
@click.option(
    "--jitter",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Up to this many more seconds per answer, uniformly drawn (seeded).",
)
@click.option(
    "--fail-500",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests answered 500 ModelArts.0010, nothing done.",
)
@click.option(
    "--fail-502",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests answered 502 APIGW.0201, nothing done.",
)
@click.option(
    "--fail-503",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests answered 503 APIGW.0201, nothing done.",
)
@click.option(
    "--fail-504",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests answered 504 APIGW.0201, nothing done.",
)
@click.option(
    "--reset-share",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests whose connection is aborted without an answer.",
)
@click.option(
    "--hang-share",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests left unanswered for --hang-seconds (then 504).",
)
@click.option(
    "--hang-seconds",
    default=120.0,
    show_default=True,
    type=click.FloatRange(0),
    help="How long a hanging request waits; make it longer than the client's timeout.",
)
@click.option(
    "--applied-then-503-share",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of requests whose stop takes effect but whose answer is a 503 (a lost success).",
)
@click.option(
    "--fault-project",
    "fault_projects",
    multiple=True,
    metavar="PROJECT",
    help="Inject faults only into this project (repeatable); default: every project.",
)
@click.option(
    "--rate-limit",
    default=None,
    metavar="LIMIT",
    help="Throttle each project to LIMIT, e.g. 10/s or 600/min (429 APIG.0308); default: none.",
)
@click.option(
    "--project-rate-limit",
    "project_rate_limits",
    multiple=True,
    metavar="PROJECT=LIMIT",
    help="A different limit for one project (repeatable); LIMIT 'none' means unlimited.",
)
@click.option(
    "--credential-rate-limit",
    default=None,
    metavar="LIMIT",
    help="Also throttle each credential (AK or token) across all projects to LIMIT.",
)
@click.option(
    "--retry-after/--no-retry-after",
    default=False,
    show_default=True,
    help="Send Retry-After (seconds until a token is free) with 429 answers.",
)
@click.option(
    "--throttle-hints/--bare-throttle",
    default=True,
    show_default=True,
    help="Say the limit in 429 messages (limit:N,time:1 second), or answer a bare message.",
)
@click.option(
    "--limit-change",
    "limit_changes",
    multiple=True,
    metavar="SECONDS=FACTOR",
    help="From SECONDS after the first request, scale every limit by FACTOR (repeatable), e.g. 20=0.5.",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help=f"Accept every request. Otherwise accept AK/SK signatures by {ENV_AK}/{ENV_SK} "
    f"(plus {ENV_SECURITY_TOKEN}, then required) and X-Auth-Token {ENV_AUTH_TOKEN}, "
    "all read from the environment.",
)
@click.option(
    "--max-clock-skew",
    default=900.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds X-Sdk-Date may differ from this machine's clock.",
)
@click.option(
    "--forbidden-project",
    "forbidden_projects",
    multiple=True,
    metavar="PROJECT",
    help="Answer 403 APIGW.0302 for every request to this project (repeatable).",
)
def simulate(
    *,
    host: str,
    port: int,
    seed: int,
    projects: int,
    instances_per_project: int,
    status_mix: str,
    inventory_file: Path | None,
    unknown_share: float,
    csv_path: Path | None,
    csv_order: Order,
    csv_only: bool,
    not_found_404_share: float,
    stop_delay: float,
    stop_failed_share: float,
    latency: float,
    jitter: float,
    fail_500: float,
    fail_502: float,
    fail_503: float,
    fail_504: float,
    reset_share: float,
    hang_share: float,
    hang_seconds: float,
    applied_then_503_share: float,
    fault_projects: tuple[str, ...],
    rate_limit: str | None,
    project_rate_limits: tuple[str, ...],
    credential_rate_limit: str | None,
    retry_after: bool,
    throttle_hints: bool,
    limit_changes: tuple[str, ...],
    no_auth: bool,
    max_clock_skew: float,
    forbidden_projects: tuple[str, ...],
) -> None:
    """Run a local ModelArts DevServer API simulator until Ctrl-C.

    It answers PUT /v1/{project_id}/dev-servers/{id}/stop and GET /v1/{project_id}/dev-servers/{id} like the
    real API (instance bodies, ModelArts.6307/6308/6309 errors, 401/403/429 from the gateway, X-Request-Id
    on every answer) and serves counters at GET /_sim/stats.
    """
    if csv_only and csv_path is None:
        raise click.UsageError("--csv-only needs --write-csv PATH")
    keys, tokens = accepted_credentials(dict(os.environ), no_auth=no_auth, required=not csv_only)
    try:
        spec = InventorySpec(
            projects=projects,
            instances_per_project=instances_per_project,
            status_mix=InventorySpec.parse_mix(status_mix),
            unknown_share=unknown_share,
            seed=seed,
        )
        faults = FaultShares(
            http_500=fail_500,
            http_502=fail_502,
            http_503=fail_503,
            http_504=fail_504,
            reset=reset_share,
            hang=hang_share,
            applied_then_503=applied_then_503_share,
        )
        config = SimulatorConfig(
            host=host,
            port=port,
            seed=seed,
            inventory=spec,
            inventory_file=inventory_file,
            stop_delay=stop_delay,
            stop_failed_share=stop_failed_share,
            not_found_404_share=not_found_404_share,
            auth_enabled=not no_auth,
            access_keys=keys,
            auth_tokens=tokens,
            max_clock_skew=max_clock_skew,
            forbidden_projects=frozenset(forbidden_projects),
            project_limit=parse_limit(rate_limit),
            project_limits=parse_project_limits(project_rate_limits),
            credential_limit=parse_limit(credential_rate_limit),
            retry_after=retry_after,
            throttle_hints=throttle_hints,
            limit_schedule=parse_schedule(limit_changes),
            latency=latency,
            jitter=jitter,
            faults=faults,
            fault_projects=frozenset(fault_projects) if fault_projects else None,
            hang_seconds=hang_seconds,
            record_requests=False,
        )
        if not csv_only:
            check_port(host, port)  # before --write-csv: a busy port leaves the file as it was
        if csv_path is not None:
            inventory = make_inventory(spec, inventory_file)
            out = sys.stdout if str(csv_path) == "-" else csv_path
            rows = write_csv(inventory, out, unknown_share=unknown_share, order=csv_order, seed=seed)
            click.echo(f"wrote {counted(rows, 'row')} to {csv_path}", err=True)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if csv_only:
        return
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(config))
    except OSError as exc:  # the port was taken between the check and the listen
        cannot_listen(host, port, exc)


async def _serve(config: SimulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with run_simulator(config) as sim:
        inv = sim.inventory
        instances = sum(inv.count(p) for p in inv.project_ids)
        click.echo(
            f"{counted(len(inv.project_ids), 'project')}, {counted(instances, 'instance')}; "
            f"auth {'on' if config.auth_enabled else 'off'}; "
            f"rate limit {config.project_limit or 'none'} per project; stop delay {config.stop_delay:g}s",
            err=True,
        )
        sys.stdout.write(f"bulkops simulator listening on {sim.url}\n")
        sys.stdout.flush()
        await stop.wait()
