"""`bulkops stop` (and `start`, `reboot`: `kw["operation"]`): from parsed flags to a finished run and its
exit code. The rows come from INPUT or `--from-report` (`inputs.RunInput`).

Order matters for the contract's promise that exit 2 means nothing was sent: flags, endpoint,
credentials, input header and report are all checked before the first request.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import click
import structlog

from bulkops import logs
from bulkops.cli.inputs import RunInput
from bulkops.cli.interrupts import Interrupts
from bulkops.cli.plan import Setting, make_plan
from bulkops.cli.stopflags import build_options, resolve_endpoint
from bulkops.cloud.auth import Credentials
from bulkops.cloud.preflight import (
    NO_CREDENTIALS,
    check_credentials,
    check_endpoint,
    check_open_files,
    credential_kind,
    is_loopback,
)
from bulkops.errors import ConfigError, ReportError
from bulkops.io.report import ReportWriter, default_report_path
from bulkops.io.reportfile import already_exists, check_path, open_report, shown
from bulkops.io.reportmeta import check_resume, has_meta, identify, note_run, remove_meta, write_meta
from bulkops.io.resume import ResumeState, load_resume, utc_now
from bulkops.models import Result, Target
from bulkops.operations import STOP, Operation
from bulkops.options import Options
from bulkops.summary import EXIT_DECLINED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RunStats
from bulkops.wording import counted

if TYPE_CHECKING:
    from bulkops.cli.runner import Observer

log = structlog.get_logger("bulkops.cli")

_GC_YOUNG = 20_000  # allocations between young collections during a run (see tuned_gc)
_TTY = "/dev/tty"  # the controlling terminal: where the confirmation is read when INPUT is a pipe


def _peeked(items: Iterator[Target | Result]) -> Iterator[Target | Result]:
    """Read the first row now, so a bad header fails before anything is sent."""
    first = next(items, None)
    return items if first is None else chain((first,), items)


@dataclass
class Prepared:
    """Everything a run needs, checked: nothing has been sent yet."""

    items: Iterator[Target | Result]
    options: Options
    writer: ReportWriter
    resume: ResumeState | None
    observer: Observer | None
    report_path: str
    summary: Callable[[RunStats], None]


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
            if not kw.get("quiet"):
                click.echo(RunStats(interrupted=True, command=_op(kw).name).render(), err=True)
            return EXIT_INTERRUPTED
        if isinstance(ready, int):
            return ready
        undo.pop_all()
    started = utc_now()
    if kw.get("job_name"):
        from bulkops.cli.jobrun import run_coordinator

        stats = run_coordinator(kw, ready, interrupts, _on_loop)
    else:
        stats = _run_local(kw, ready, interrupts)
    if ready.report_path != "-":
        note_run(ready.report_path, started=started, ended=utc_now())  # for `report summarize` tickets
    if stats.write_error is not None:
        again = " (--resume sends them again)" if ready.report_path != "-" else ""
        click.echo(
            f"bulkops: error: {stats.write_error}; stopped sending: {counted(stats.unrecorded, 'row')} that "
            f"finished after it are not in the report{again}",
            err=True,
        )
    if ready.report_path != "-" and _summary_mode(kw).value == "text":
        click.echo(f"report: {ready.report_path}", err=True)
    return stats.exit_code()


def _on_loop(main: Callable[[], Any]) -> None:
    with tuned_gc():
        anyio.run(main, backend_options=event_loop_options())


def _run_local(kw: dict[str, Any], ready: Prepared, interrupts: Interrupts) -> RunStats:
    """The run on this host alone (or sharing limits only, with --redis)."""
    from bulkops.cli.runner import run_stop

    with tuned_gc():
        return anyio.run(
            lambda: run_stop(
                ready.items,
                ready.options,
                ready.writer,
                resume=ready.resume,
                observer=ready.observer,
                interrupts=interrupts,
                summary=ready.summary,
                redis_url=kw.get("redis_url") or None,
            ),
            backend_options=event_loop_options(),
        )


def _summary_mode(kw: dict[str, Any]) -> Any:
    from bulkops.cli.runlog import summary_mode

    return summary_mode(log_format=_log_format(kw), quiet=bool(kw.get("quiet")))


def _log_format(kw: dict[str, Any]) -> str:
    return str(kw["log_format"] or ("console" if sys.stderr.isatty() else "json"))


def _prepare(kw: dict[str, Any], undo: contextlib.ExitStack) -> Prepared | int:
    """Check flags, endpoint, credentials, report, input header and the input a resumed report started
    from, in that order; an exit code when the command ends here (a dry run, a declined confirmation).

    A dry run makes the same checks (without creating, locking or repairing anything), so that it fails
    wherever the real run would.
    """
    credentials = _credentials()
    quiet = bool(kw.get("quiet"))
    log_writer = logs.configure(
        fmt=_log_format(kw),
        level="error" if quiet else kw["log_level"],
        secrets=credentials.secrets() if credentials else (),
    )
    if kw["resume"] and not kw["report_path"]:
        raise ReportError("--resume needs --report PATH (the report to continue)")
    endpoint = resolve_endpoint(kw["endpoint"], kw["region"])
    src = RunInput.of(kw)

    if endpoint is None:
        raise ConfigError("no endpoint: give --region (e.g. cn-north-4) or --endpoint URL")
    options = build_options(kw, endpoint, credentials)
    check_credentials(credentials)
    check_open_files(options.concurrency)
    host, plain_remote = check_endpoint(endpoint, insecure=kw["insecure"])
    if plain_remote:
        log.warning("bulkops.transport.insecure", host=host)
    if credentials is None and not is_loopback(host):
        raise ConfigError(NO_CREDENTIALS)
    if kw.get("job_name") and not kw.get("redis_url"):
        raise ConfigError("--job needs --redis URL (the Redis the job's workers share)")
    if kw.get("redis_url"):
        _check_redis(kw["redis_url"])
    report_path = kw["report_path"] or default_report_path()
    resuming = bool(kw["resume"])
    if resuming and report_path == "-":
        raise ReportError("--resume needs a report file, not standard output")
    if resuming and not check_path(report_path):
        raise ReportError(
            f"--report {shown(report_path)} does not exist, so there is nothing to resume; "
            "check the path, or leave out --resume to start a new report"
        )
    if kw["dry_run"]:
        return _dry_run(kw, options, credentials, report_path)

    items = _peeked(src.rows())
    identity = identify(src.path)
    if resuming:
        check_resume(report_path, identity)
    if kw.get("job_name"):
        from bulkops.cli.jobrun import check_coordinator

        check_coordinator(kw, options, identity.sha256 if identity else "", resuming)
    report = open_report(report_path, append=resuming)  # checked and locked for the whole run
    undo.callback(report.discard)
    resume = load_resume(report_path) if resuming else None
    if resume is not None and resume.repaired:
        log.warning("bulkops.report.repaired", path=report_path)
    if not _confirmed(kw, src, endpoint, resume, report_path):
        click.echo("bulkops: declined: nothing sent", err=True)
        return EXIT_DECLINED
    if report_path != "-" and not (resuming and has_meta(report_path)):
        write_meta(report_path, identity, utc_now())
        if report.created:
            undo.callback(remove_meta, report_path)
    observer = _observer(kw, src, log_writer)
    from bulkops.cli.runlog import summary_printer

    summary = summary_printer(_summary_mode(kw), None if report_path == "-" else report_path)
    return Prepared(items, options, ReportWriter.on(report), resume, observer, report_path, summary)


def _dry_run(kw: dict[str, Any], options: Options, credentials: Any, report_path: str) -> int:
    """The plan, after the report checks the real run makes (nothing is created, locked or repaired)."""
    src = RunInput.of(kw)
    items = _peeked(src.rows())
    resume = None
    shown_report = "standard output" if report_path == "-" else report_path
    if report_path != "-":
        if kw["resume"]:
            check_resume(report_path, identify(src.path))
            resume = load_resume(report_path, repair=False)
            shown_report += " (resumed: appended to)"
        elif check_path(report_path):
            if os.stat(report_path).st_size > 0:
                raise already_exists(report_path)
        else:
            parent = os.path.dirname(os.path.abspath(report_path))
            if not os.path.isdir(parent):
                raise ReportError(f"cannot write --report {shown(report_path)}: directory does not exist")
            if not os.access(parent, os.W_OK):
                raise ReportError(f"cannot write --report {shown(report_path)}: permission denied")
            shown_report += " (new)" if kw["report_path"] else " (new; the default name is made per run)"
    plan = make_plan(items, resume=resume)
    shared = _shown_redis(kw.get("redis_url"))
    setting = Setting(options.endpoint, credential_kind(credentials), shown_report, shared)
    if not kw.get("quiet"):
        click.echo(plan.render(options, setting=setting), err=True)
    return EXIT_OK if plan.invalid == 0 else EXIT_FAILED


def _check_redis(url: str) -> None:
    """`--redis`: Redis answers a ping now (ConfigError, one line, exit 2, nothing sent, if not)."""
    from bulkops.redis.client import check_reachable

    anyio.run(lambda: check_reachable(url))


def _shown_redis(url: str | None) -> str | None:
    if not url:
        return None
    from bulkops.redis.naming import redact_url

    return redact_url(url)


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


def _op(kw: dict[str, Any]) -> Operation:
    op = kw.get("operation", STOP)
    assert isinstance(op, Operation)
    return op


def _confirmed(
    kw: dict[str, Any], src: RunInput, endpoint: str, resume: ResumeState | None, report_path: str
) -> bool:
    """Ask before sending, when someone can answer: on the terminal of stdin, else on /dev/tty when INPUT
    comes through a pipe but stderr is a terminal. Nobody to ask (cron, CI, --yes): go ahead."""
    if kw["yes"]:
        return True
    channel = _prompt_channel(src.path)
    if channel is None:
        return True
    answers, prompts = channel
    try:
        question = _question(src, endpoint, resume, report_path, _op(kw))
        prompts.write(question + " [y/N]: ")
        prompts.flush()
        answer = answers.readline()
    except (OSError, ValueError):
        return False
    finally:
        if answers is not sys.stdin:
            with contextlib.suppress(OSError, ValueError):
                answers.close()
    if not answer.endswith("\n"):
        prompts.write("\n")  # end of input: the next line starts on its own
    return answer.strip().lower() in ("y", "yes")


def _prompt_channel(input_path: str) -> tuple[TextIO, TextIO] | None:
    """(where the answer is read, where the question is written), or None when there is no one to ask."""
    if input_path != "-" and sys.stdin.isatty():
        return sys.stdin, sys.stderr
    if sys.stdin.isatty() or not sys.stderr.isatty():
        return None  # INPUT typed on the terminal itself, or nobody watching stderr
    try:
        fd = os.open(_TTY, os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return None  # no controlling terminal (cron, CI, a daemon)
    return open(fd, encoding="utf-8", errors="replace"), sys.stderr


def _question(
    src: RunInput, endpoint: str, resume: ResumeState | None, report_path: str, op: Operation
) -> str:
    """ "Stop 1200 rows of ids.csv against URL?" ("Start ...", "Reboot ..."); with --resume, the rows left
    and those already done."""
    where, verb = src.shown, op.verb
    if resume is None:
        total = src.total()
        rows = counted(total, "row") if total is not None else "the rows"
        return f"{verb} {rows} of {where} against {endpoint}?"
    if src.path == "-":
        return f"{verb} the rows of standard input not done in {report_path} against {endpoint}?"
    left = done = 0
    for item in src.rows():
        if isinstance(item, Target):
            if resume.done(item.project_id, item.id):
                done += 1
            else:
                left += 1
    return (
        f"{verb} {counted(left, 'row')} of {where} against {endpoint} "
        f"({done} already done in {report_path}, not sent again)?"
    )


def _observer(kw: dict[str, Any], src: RunInput, log_writer: logs.LineWriter) -> Observer | None:
    """The progress line on a terminal; off one, a `bulkops.run.progress` event every interval; none with
    --quiet or --no-progress."""
    show = kw["progress"]
    if kw.get("quiet") or show is False:
        return None
    total = src.total()
    on_tty = sys.stderr.isatty() and not (kw["report_path"] == "-" and sys.stdout.isatty())
    if show or on_tty:
        try:
            from bulkops.cli.progress import progress_observer
        except ImportError:
            return None
        return progress_observer(total, log_writer=log_writer)
    interval = float(kw.get("progress_interval", 30.0) or 0.0)
    if interval <= 0:
        return None
    from bulkops.cli.runlog import heartbeat_observer

    return heartbeat_observer(total, interval)
