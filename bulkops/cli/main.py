"""The command line: parse flags into `Options`, configure logging, run, map errors to exit codes.

Thin on purpose: every decision lives in a library module. Exit codes (docs/contract.md): 0 all rows
succeeded, 1 some did not, 2 usage/configuration/input error with nothing sent, 3 confirmation declined
(nothing sent), 130 interrupted.
Errors are one line on stderr, `bulkops: error: ...`, never a traceback.

Start-up is kept fast: aiohttp, the simulator and the demo are imported only by the commands that use
them (`_LazyGroup`), so `bulkops --help` and `bulkops stop --dry-run` stay well under 0.3 s.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from bulkops.cli.errorline import fail
from bulkops.errors import BulkOpsError
from bulkops.summary import EXIT_INTERRUPTED

_LAZY = {
    "simulate": ("bulkops.simulator.command", "simulate"),
    "demo": ("bulkops.cli.demo", "demo"),
    "report": ("bulkops.cli.report_cli", "report"),
    "limits": ("bulkops.cli.command_limits", "limits_command"),
    "list": ("bulkops.cli.command_list", "list_command"),
}
# Short help for the command list, so that `bulkops --help` imports none of the lazy commands.
_LAZY_HELP = {
    "simulate": "Run a local simulator of the DevServer API, for rehearsals and tests.",
    "demo": "Rehearse a bulk stop end to end against the built-in simulator.",
    "report": "Read a report: summarize it, or list the rows to retry.",
    "limits": "Show the limits runners share through Redis (--redis URL).",
    "list": "List the DevServer instances of projects, as the CSV `bulkops stop` reads.",
}


class _LazyGroup(click.Group):
    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> NoReturn:
        """click's own `main`, except that a usage error is one `bulkops: error:` line (exit 2), like every
        other error, instead of click's usage block. A bare group (`bulkops`, `bulkops report`) still
        shows its help."""
        extra.pop("standalone_mode", None)
        try:
            result = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.ClickException as exc:
            if isinstance(exc, click.UsageError) and not isinstance(exc, click.exceptions.NoArgsIsHelpError):
                where = exc.ctx.command_path if exc.ctx is not None else "bulkops"
                fail(f"{exc.format_message().rstrip('.')}; see '{where} --help'")
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _LAZY_HELP[name]) for name in _LAZY]
        for name in super().list_commands(ctx):
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY:
            module, attr = _LAZY[cmd_name]
            try:
                command = getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError:
                return None
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


def find_error(exc: BaseException) -> BulkOpsError | None:
    """The BulkOpsError inside an exception or exception group, if any."""
    if isinstance(exc, BulkOpsError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_error(inner)
            if found is not None:
                return found
    if exc.__cause__ is not None and exc.__cause__ is not exc:
        return find_error(exc.__cause__)
    return None


@click.group(
    cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="bulkops")
def main() -> None:
    """Stop Huawei Cloud ModelArts DevServer instances in bulk, safely and fast.

    Try `bulkops demo` to see a whole run against the built-in simulator.
    """


class _Rate(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A rate: `10`, `10/s` or `600/min` (requests per second; the simulator's `--rate-limit` spelling)."""

    name = "rate"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from bulkops.options import parse_rate

        try:
            return parse_rate(value)
        except BulkOpsError as exc:
            self.fail(str(exc), param, ctx)


RATE = _Rate()


def _log_format_default() -> str:
    return "console" if sys.stderr.isatty() else "json"


@main.command("stop")
@click.argument("input_path", metavar="INPUT")
@click.option(
    "--report",
    "report_path",
    metavar="PATH",
    help="JSON-lines report, one record per input row; '-' for stdout. "
    "[default: bulkops-report-<UTC time, ms>Z-<pid>.jsonl]",
)
@click.option(
    "--project-id",
    envvar="HUAWEICLOUD_SDK_PROJECT_ID",
    show_envvar=True,
    metavar="ID",
    help="Project for rows without a project_id column.",
)
@click.option(
    "--region",
    envvar="HUAWEICLOUD_SDK_REGION",
    show_envvar=True,
    metavar="NAME",
    help="Region, e.g. cn-north-4: endpoint from the official SDK's region table.",
)
@click.option(
    "--endpoint",
    envvar="BULKOPS_ENDPOINT",
    show_envvar=True,
    metavar="URL",
    help="Base URL that overrides --region, e.g. http://127.0.0.1:8080.",
)
@click.option(
    "--rate",
    type=RATE,
    default=10.0,
    show_default=True,
    metavar="R",
    help="Most requests per second sent to one project: 10, 10/s or 600/min.",
)
@click.option(
    "--burst",
    type=float,
    default=None,
    metavar="B",
    help="Most requests one project may send at once after an idle spell. [default: rate]",
)
@click.option(
    "--rates-file",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PATH",
    help="Per-project limits (CSV or JSON: project_id, rate, burst) for raised quotas.",
)
@click.option(
    "--global-rate",
    type=RATE,
    default=None,
    metavar="R",
    help="Most requests per second in all, across projects (one credential's ceiling): 10, 10/s or 600/min.",
)
@click.option(
    "--concurrency",
    type=int,
    default=64,
    show_default=True,
    metavar="C",
    help="Most requests in flight overall.",
)
@click.option(
    "--max-attempts",
    type=int,
    default=5,
    show_default=True,
    metavar="N",
    help="Attempts per instance, the first included (429s do not count: they only slow down).",
)
@click.option(
    "--timeout",
    type=float,
    default=30.0,
    show_default=True,
    metavar="S",
    help="Seconds for one HTTP attempt.",
)
@click.option(
    "--slow-start/--no-slow-start",
    default=True,
    show_default=True,
    help="Start projects whose limit no --rates-file states with a few requests and climb to --rate; "
    "--no-slow-start when --rate is the real limit (saves the first round trips).",
)
@click.option(
    "--throttle-timeout",
    type=float,
    default=900.0,
    show_default=True,
    metavar="S",
    help="Give a project up (its rows failed, bulkops.throttled) only after this many seconds of 429s "
    "without a break; until then a 429 only slows its project down.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the report at --report (it must exist, started from the same INPUT): skip rows that "
    "succeeded there.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Make every check the real run makes, send and write nothing, print the plan.",
)
@click.option("--wait", is_flag=True, help="Poll each accepted instance until STOPPED or STOP_FAILED.")
@click.option(
    "--wait-timeout",
    type=float,
    default=900.0,
    show_default=True,
    metavar="S",
    help="With --wait, give up on an instance after this many seconds.",
)
@click.option(
    "--poll-interval",
    type=float,
    default=3.0,
    show_default=True,
    metavar="S",
    help="With --wait, seconds before the first poll; later polls back off to 30 s.",
)
@click.option("--yes", "-y", is_flag=True, help="Never ask for confirmation.")
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow plain http:// to a non-loopback endpoint (credentials travel unencrypted).",
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "console"]),
    default=None,
    help="Structured logs on stderr. [default: console on a TTY, else json]",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="warning",
    show_default=True,
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress on stderr: a redrawn line on a TTY; off a TTY a `bulkops.run.progress` log event every "
    "--progress-interval seconds. [default: on]",
)
@click.option(
    "--progress-interval",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="S",
    help="Off a TTY, seconds between `bulkops.run.progress` events (0: none).",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Errors only: no progress, no summary, log level error.",
)
def stop_command(**kw: Any) -> None:
    """Stop every DevServer instance listed in INPUT (a CSV file, or '-' for stdin).

    Credentials come from the environment as the official SDK reads them: HUAWEICLOUD_SDK_AK and
    HUAWEICLOUD_SDK_SK (with HUAWEICLOUD_SDK_SECURITY_TOKEN for temporary credentials), or
    BULKOPS_AUTH_TOKEN (an IAM token).

    Exit status: 0 every row succeeded; 1 some did not (see the report); 2 usage or input error, nothing
    sent; 3 the confirmation was declined, nothing sent; 130 interrupted (run again with --resume).
    """
    from bulkops.cli.interrupts import Interrupts, take_early

    interrupts = take_early()  # installed by `bulkops.cli.entry` before click and this module loaded
    if interrupts is None:
        interrupts = Interrupts()
        interrupts.install()  # first: a signal while the command starts still ends it cleanly (exit 130)
    try:
        from bulkops.cli.command_stop import run_stop_command

        code = run_stop_command(interrupts=interrupts, **kw)
    except BulkOpsError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        click.echo("bulkops: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BaseExceptionGroup as group:
        found = find_error(group)
        if found is None:
            raise
        fail(str(found))
    finally:
        interrupts.uninstall(exiting=True)
    sys.exit(code)
