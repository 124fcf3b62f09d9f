"""`bulkops stop`: from parsed flags to a finished run and its exit code.

Order matters for the contract's promise that exit 2 means nothing was sent: flags, endpoint,
credentials, input header and report are all checked before the first request.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import importlib.util
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click
import structlog

from bulkops import logs
from bulkops.auth import Credentials
from bulkops.errors import ConfigError, ReportError
from bulkops.interrupts import Interrupts
from bulkops.models import Result, Target
from bulkops.options import Options, RateLimit, RetryPolicy
from bulkops.plan import make_plan
from bulkops.regions import endpoint_for
from bulkops.report import ReportWriter, default_report_path
from bulkops.reportfile import open_report
from bulkops.resume import ResumeState, load_resume
from bulkops.rowcount import count_rows
from bulkops.summary import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RunStats
from bulkops.targets import read_targets

if TYPE_CHECKING:
    from bulkops.runner import Observer

log = structlog.get_logger("bulkops.cli")

_GC_YOUNG = 20_000  # allocations between young collections during a run (see tuned_gc)


def resolve_endpoint(endpoint: str | None, region: str | None) -> str | None:
    """--endpoint wins over --region; None when neither is given."""
    if endpoint:
        return endpoint
    if region:
        url, known = endpoint_for(region)
        if not known:
            log.warning("bulkops.region.unknown", region=region, endpoint=url)
        return url
    return None


def load_rates(path: str) -> dict[str, RateLimit]:
    """Per-project limits from a CSV (project_id,rate[,burst]) or JSON file (list or mapping)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read --rates-file {path}: {exc.strerror or exc}") from exc
    rows: list[dict[str, Any]]
    try:
        if path.lower().endswith(".json") or text.lstrip().startswith(("{", "[")):
            data = json.loads(text)
            if isinstance(data, dict):
                rows = [
                    {"project_id": k, **(v if isinstance(v, dict) else {"rate": v})} for k, v in data.items()
                ]
            elif isinstance(data, list):
                if not all(isinstance(r, dict) for r in data):
                    raise ConfigError(f"--rates-file {path}: every list entry must be an object")
                rows = data
            else:
                raise ConfigError(f"--rates-file {path}: expected a JSON list or object")
        else:
            rows = [
                {k.strip().lower(): v for k, v in r.items() if k} for r in csv.DictReader(io.StringIO(text))
            ]
        rates: dict[str, RateLimit] = {}
        for n, row in enumerate(rows, start=1):
            project = str(row.get("project_id", "")).strip()
            if not project:
                raise ConfigError(f"--rates-file {path}: entry {n} has no project_id")
            burst = row.get("burst")
            try:
                rates[project] = RateLimit(
                    float(row["rate"]), float(burst) if burst not in (None, "") else None
                )
            except ConfigError as exc:
                raise ConfigError(f"--rates-file {path}: {project}: {exc}") from exc
        return rates
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"--rates-file {path}: each entry needs project_id and a numeric rate") from exc


def build_options(kw: dict[str, Any], endpoint: str, credentials: Credentials | None) -> Options:
    """Options from the stop command's flags (raises ConfigError on nonsense values)."""
    rates = load_rates(kw["rates_file"]) if kw.get("rates_file") else {}
    try:
        rate = RateLimit(kw["rate"], kw["burst"])
    except ConfigError as exc:
        raise ConfigError(f"--rate/--burst: {exc}") from exc
    try:
        global_rate = RateLimit(kw["global_rate"]) if kw["global_rate"] is not None else None
    except ConfigError as exc:
        raise ConfigError(f"--global-rate: {exc}") from exc
    return Options(
        endpoint=endpoint,
        credentials=credentials,
        rate=rate,
        rates=rates,
        global_rate=global_rate,
        concurrency=kw["concurrency"],
        retry=RetryPolicy(max_attempts=kw["max_attempts"]),
        timeout=kw["timeout"],
        wait=kw["wait"],
        wait_timeout=kw["wait_timeout"],
        throttle_timeout=kw.get("throttle_timeout", 900.0),
        slow_start=kw.get("slow_start", True),
        poll_interval=kw.get("poll_interval", 3.0),
        insecure=kw["insecure"],
    )


def _peeked(items: Iterator[Target | Result]) -> Iterator[Target | Result]:
    """Read the first row now, so a bad header fails before anything is sent."""
    first = next(items, None)
    return items if first is None else chain((first,), items)


@dataclass
class _Prepared:
    """Everything a run needs, checked: nothing has been sent yet."""

    items: Iterator[Target | Result]
    options: Options
    writer: ReportWriter
    resume: ResumeState | None
    observer: Observer | None
    report_path: str


def run_stop_command(interrupts: Interrupts | None = None, **kw: Any) -> int:
    """The whole `bulkops stop` command; returns the exit code (raises BulkOpsError for exit 2).

    `interrupts` are the command's signal handlers, installed when it started; a signal before the run
    ends the command here, with its summary and exit 130, nothing sent.
    """
    interrupts = interrupts or Interrupts()
    with contextlib.ExitStack() as undo:  # what to take back if the run does not start
        try:
            with interrupts.raising():
                ready = _prepare(kw, undo)
        except KeyboardInterrupt:
            click.echo(RunStats(interrupted=True).render(), err=True)
            return EXIT_INTERRUPTED
        if isinstance(ready, int):
            return ready
        undo.pop_all()
    from bulkops.runner import run_stop

    with tuned_gc():
        stats = anyio.run(
            lambda: run_stop(
                ready.items,
                ready.options,
                ready.writer,
                resume=ready.resume,
                observer=ready.observer,
                interrupts=interrupts,
            ),
            backend_options=event_loop_options(),
        )
    if stats.write_error is not None:
        again = " (--resume sends them again)" if ready.report_path != "-" else ""
        click.echo(
            f"bulkops: error: {stats.write_error}; stopped sending: {stats.unrecorded} rows that finished "
            f"after it are not in the report{again}",
            err=True,
        )
    if ready.report_path != "-":
        click.echo(f"report: {ready.report_path}", err=True)
    return stats.exit_code()


def _prepare(kw: dict[str, Any], undo: contextlib.ExitStack) -> _Prepared | int:
    """Check flags, endpoint, credentials, input header and report, in that order; an exit code when the
    command ends here (a dry run, a declined confirmation)."""
    credentials = _credentials()
    fmt = kw["log_format"] or ("console" if sys.stderr.isatty() else "json")
    log_writer = logs.configure(
        fmt=fmt, level=kw["log_level"], secrets=credentials.secrets() if credentials else ()
    )
    endpoint = resolve_endpoint(kw["endpoint"], kw["region"])
    input_path: str = kw["input_path"]
    default_project = kw["project_id"] or None

    if kw["dry_run"]:
        options = build_options(kw, endpoint or "https://dry-run.invalid", credentials)
        plan = make_plan(read_targets(_source(input_path), default_project=default_project))
        click.echo(plan.render(options), err=True)
        return EXIT_OK if plan.invalid == 0 else EXIT_FAILED

    if endpoint is None:
        raise ConfigError("no endpoint: give --region (e.g. cn-north-4) or --endpoint URL")
    options = build_options(kw, endpoint, credentials)
    from bulkops.api import check_credentials, check_endpoint, check_open_files

    check_credentials(credentials)
    check_open_files(options.concurrency)
    url, plain_remote = check_endpoint(endpoint, insecure=kw["insecure"])
    if plain_remote:
        log.warning("bulkops.transport.insecure", host=url.host)
    if credentials is None and url.host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            "no credentials: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, or BULKOPS_AUTH_TOKEN"
        )
    items = _peeked(read_targets(_source(input_path), default_project=default_project))

    report_path = kw["report_path"] or default_report_path()
    if kw["resume"] and report_path == "-":
        raise ReportError("--resume needs a report file, not standard output")
    report = open_report(report_path, append=bool(kw["resume"]))  # checked and locked for the whole run
    undo.callback(report.discard)
    resume = load_resume(report_path) if kw["resume"] else None
    if resume is not None and resume.repaired:
        log.warning("bulkops.report.repaired", path=report_path)
    if not _confirmed(kw, input_path, endpoint):
        click.echo("bulkops: nothing sent", err=True)
        return EXIT_FAILED
    observer = _observer(kw, input_path, log_writer)
    return _Prepared(items, options, ReportWriter.on(report), resume, observer, report_path)


@contextlib.contextmanager
def tuned_gc() -> Iterator[None]:
    """Collect garbage less often during the run (young generation at 20,000 objects, not 700); restore.

    aiohttp allocates a few dozen container objects per request, so at the default threshold a young
    collection ran every few requests, on the event loop, while answers waited. Measured with
    `python -m benchmarks latency` (100 ms, concurrency 256): 0.92 of Little's bound before, 0.96 after.
    What is alive at start (modules, classes) is frozen first, so the full collections that still come
    do not walk it. The cost is memory: up to that many young objects of cyclic garbage between
    collections, a few MB. The previous settings come back afterwards, for callers in the same process.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(before[0], _GC_YOUNG), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def event_loop_options() -> dict[str, Any]:
    """uvloop when it is installed (`pip install 'bulkops[fast]'`), else asyncio's own loop.

    Measured in benchmarks/: 5-30% more requests/s at high concurrency, where the client's CPU is the limit.
    `BULKOPS_NO_UVLOOP=1` turns it off.
    """
    if os.environ.get("BULKOPS_NO_UVLOOP"):
        return {}
    return {"use_uvloop": True} if importlib.util.find_spec("uvloop") is not None else {}


def _credentials() -> Credentials | None:
    try:
        return Credentials.from_env()
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _source(input_path: str) -> Any:
    return sys.stdin.buffer if input_path == "-" else input_path


def _confirmed(kw: dict[str, Any], input_path: str, endpoint: str) -> bool:
    if kw["yes"] or input_path == "-" or not sys.stdin.isatty():
        return True
    total = count_rows(input_path)
    rows = f"{total} rows" if total is not None else "the rows"
    return click.confirm(f"Stop {rows} of {input_path} against {endpoint}?", default=False, err=True)


def _observer(kw: dict[str, Any], input_path: str, log_writer: logs.LineWriter) -> Observer | None:
    show = kw["progress"]
    if show is None:  # default: on a terminal, unless the report itself goes to that terminal
        show = sys.stderr.isatty() and not (kw["report_path"] == "-" and sys.stdout.isatty())
    if not show:
        return None
    try:
        from bulkops.progress import progress_observer
    except ImportError:
        return None
    total = count_rows(input_path) if input_path != "-" else None
    return progress_observer(total, log_writer=log_writer)
