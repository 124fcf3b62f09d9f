"""The options every run command shares (`bulkops stop`, `start`, `reboot`): one list, applied to each.

The commands differ only in their operation (`bulkops.operations`), which names the command, its help
and what `--wait` polls for; the flags, their defaults and their help are the same for all three.
`INPUT` is optional so that `--from-report REPORT` can take its place (exactly one of the two; checked
by `check_input`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from bulkops.errors import BulkOpsError
from bulkops.operations import Operation

F = TypeVar("F", bound=Callable[..., Any])


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


def _waits_for(op: Operation) -> str:
    """ "STOPPED or STOP_FAILED"; a reboot's "RUNNING (after REBOOTING) or REBOOT_FAILED"."""
    after = f" (after {op.transit})" if op.via_transit else ""
    return f"{op.goal}{after} or {op.name.upper()}_FAILED"


def run_options(op: Operation) -> Callable[[F], F]:
    """INPUT and every option of a run command, for operation `op`."""
    decorators = [
        click.argument("input_path", metavar="INPUT", required=False),
        click.option(
            "--from-report",
            "from_report",
            metavar="REPORT",
            default=None,
            help="Instead of INPUT: the rows whose instances the run that wrote REPORT changed (accepted, "
            "stopped or running; not already_*), e.g. start what last night's stop stopped.",
        ),
        click.option(
            "--report",
            "report_path",
            metavar="PATH",
            help="JSON-lines report, one record per input row; '-' for stdout. "
            "[default: bulkops-report-<UTC time, ms>Z-<pid>.jsonl]",
        ),
        click.option(
            "--project-id",
            envvar="HUAWEICLOUD_SDK_PROJECT_ID",
            show_envvar=True,
            metavar="ID",
            help="Project for rows without a project_id column.",
        ),
        click.option(
            "--region",
            envvar="HUAWEICLOUD_SDK_REGION",
            show_envvar=True,
            metavar="NAME",
            help="Region, e.g. cn-north-4: endpoint from the official SDK's region table.",
        ),
        click.option(
            "--endpoint",
            envvar="BULKOPS_ENDPOINT",
            show_envvar=True,
            metavar="URL",
            help="Base URL that overrides --region, e.g. http://127.0.0.1:8080.",
        ),
        click.option(
            "--rate",
            type=RATE,
            default=10.0,
            show_default=True,
            metavar="R",
            help="Most requests per second sent to one project: 10, 10/s or 600/min.",
        ),
        click.option(
            "--burst",
            type=float,
            default=None,
            metavar="B",
            help="Most requests one project may send at once after an idle spell. [default: rate]",
        ),
        click.option(
            "--rates-file",
            type=click.Path(dir_okay=False),
            default=None,
            metavar="PATH",
            help="Per-project limits (CSV or JSON: project_id, rate, burst) for raised quotas.",
        ),
        click.option(
            "--global-rate",
            type=RATE,
            default=None,
            metavar="R",
            help="Most requests per second in all, across projects (one credential's ceiling): "
            "10, 10/s or 600/min.",
        ),
        click.option(
            "--redis",
            "redis_url",
            default=None,
            envvar="BULKOPS_REDIS_URL",
            show_envvar=True,
            metavar="URL",
            help="Share rate limits with every run naming this Redis (redis://, rediss://, unix://; "
            "password from the URL or $BULKOPS_REDIS_PASSWORD). Unreachable at start: exit 2; lost "
            "mid-run: local pacing.",
        ),
        click.option(
            "--job",
            "job_name",
            default=None,
            metavar="NAME",
            help="With --redis: run this as job NAME over several hosts; this command coordinates (publishes "
            "the rows, works on them, writes the one report) and `bulkops worker --job NAME` on any host "
            "joins. --resume re-attaches to the job.",
        ),
        click.option(
            "--redis-grace",
            type=click.FloatRange(min=0),
            default=300.0,
            show_default=True,
            metavar="S",
            help="With --job: seconds Redis may be away mid-job (rows in flight finish, their finals wait) "
            "before this exits 1 with a report that --resume completes.",
        ),
        click.option(
            "--concurrency",
            type=int,
            default=64,
            show_default=True,
            metavar="C",
            help="Most requests in flight overall.",
        ),
        click.option(
            "--max-attempts",
            type=int,
            default=5,
            show_default=True,
            metavar="N",
            help="Attempts per instance, the first included (429s do not count: they only slow down).",
        ),
        click.option(
            "--timeout",
            type=float,
            default=30.0,
            show_default=True,
            metavar="S",
            help="Seconds for one HTTP attempt.",
        ),
        click.option(
            "--slow-start/--no-slow-start",
            default=True,
            show_default=True,
            help="Start projects whose limit no --rates-file states with a few requests and climb to --rate; "
            "--no-slow-start when --rate is the real limit (saves the first round trips).",
        ),
        click.option(
            "--throttle-timeout",
            type=float,
            default=900.0,
            show_default=True,
            metavar="S",
            help="Give a project up (its rows failed, bulkops.throttled) only after this many seconds of "
            "429s without a break; until then a 429 only slows its project down.",
        ),
        click.option(
            "--resume",
            is_flag=True,
            help="Continue the report at --report (it must exist, started from the same INPUT): skip rows "
            "that succeeded there.",
        ),
        click.option(
            "--dry-run",
            is_flag=True,
            help="Make every check the real run makes, send and write nothing, print the plan.",
        ),
        click.option("--wait", is_flag=True, help=f"Poll each accepted instance until {_waits_for(op)}."),
        click.option(
            "--wait-timeout",
            type=float,
            default=900.0,
            show_default=True,
            metavar="S",
            help="With --wait, give up on an instance after this many seconds.",
        ),
        click.option(
            "--poll-interval",
            type=float,
            default=3.0,
            show_default=True,
            metavar="S",
            help="With --wait, seconds before the first poll; later polls back off to 30 s.",
        ),
        click.option("--yes", "-y", is_flag=True, help="Never ask for confirmation."),
        click.option(
            "--insecure",
            is_flag=True,
            help="Allow plain http:// to a non-loopback endpoint (credentials travel unencrypted).",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["json", "console"]),
            default=None,
            help="Structured logs on stderr. [default: console on a TTY, else json]",
        ),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            default="warning",
            show_default=True,
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            help="Progress on stderr: a redrawn line on a TTY; off a TTY a `bulkops.run.progress` log "
            "event every --progress-interval seconds. [default: on]",
        ),
        click.option(
            "--progress-interval",
            type=click.FloatRange(min=0),
            default=30.0,
            show_default=True,
            metavar="S",
            help="Off a TTY, seconds between `bulkops.run.progress` events (0: none).",
        ),
        click.option(
            "--quiet",
            "-q",
            is_flag=True,
            help="Errors only: no progress, no summary, log level error.",
        ),
    ]

    def apply(command: F) -> F:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def check_input(kw: dict[str, Any]) -> None:
    """Exactly one of INPUT and --from-report (a usage error, exit 2, otherwise)."""
    ctx = click.get_current_context(silent=True)
    if kw.get("input_path") is None and kw.get("from_report") is None:
        raise click.UsageError("Missing argument 'INPUT' (or --from-report REPORT)", ctx=ctx)
    if kw.get("input_path") is not None and kw.get("from_report") is not None:
        raise click.UsageError("give INPUT or --from-report REPORT, not both", ctx=ctx)


def run_help(op: Operation) -> str:
    """The command's help: what it does, where credentials come from, its exit status."""
    return f"""{op.verb} every DevServer instance listed in INPUT (a CSV file, or '-' for stdin).

    With --from-report REPORT instead of INPUT: {op.name} the rows whose instances the run that wrote
    REPORT changed (e.g. `bulkops start --from-report stop-report.jsonl` starts what the stop stopped).

    Credentials come from the environment as the official SDK reads them: HUAWEICLOUD_SDK_AK and
    HUAWEICLOUD_SDK_SK (with HUAWEICLOUD_SDK_SECURITY_TOKEN for temporary credentials), or
    BULKOPS_AUTH_TOKEN (an IAM token).

    Exit status: 0 every row succeeded; 1 some did not (see the report); 2 usage or input error, nothing
    sent; 3 the confirmation was declined, nothing sent; 130 interrupted (run again with --resume).
    """
