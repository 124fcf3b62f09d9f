"""The command line: parse flags into `Options`, configure logging, run, map errors to exit codes.

Thin on purpose: every decision lives in a library module. Exit codes (docs/contract.md): 0 all rows
succeeded, 1 some did not, 2 usage/configuration/input error with nothing sent, 3 confirmation declined
(nothing sent), 130 interrupted.
Errors are one line on stderr, `bulkops: error: ...`, never a traceback.

Start-up is kept fast: aiohttp, the simulator and the demo are imported only by the commands that use
them (`_LazyGroup`), so `bulkops --help` and `bulkops stop --dry-run` stay well under 0.3 s.

`stop`, `start` and `reboot` are one command made three times (`_run_command`): the operation
(`bulkops.operations`) is their only difference, and their options are one list (`runflags`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from bulkops.cli.errorline import fail, find_error
from bulkops.cli.runflags import check_input, run_help, run_options
from bulkops.errors import BulkOpsError
from bulkops.operations import OPERATIONS, Operation
from bulkops.summary import EXIT_INTERRUPTED

_LAZY = {
    "simulate": ("bulkops.simulator.command", "simulate"),
    "demo": ("bulkops.cli.demo", "demo"),
    "report": ("bulkops.cli.report_cli", "report"),
    "limits": ("bulkops.cli.command_limits", "limits_command"),
    "list": ("bulkops.cli.command_list", "list_command"),
    "worker": ("bulkops.cli.command_job", "worker_command"),
    "job": ("bulkops.cli.command_job", "job_group"),
}
# Short help for the command list, so that `bulkops --help` imports none of the lazy commands.
_LAZY_HELP = {
    "simulate": "Run a local simulator of the DevServer API, for rehearsals and tests.",
    "demo": "Rehearse a bulk stop and the morning's start end to end against the built-in simulator.",
    "report": "Read a report: summarize it, or list the rows to retry.",
    "limits": "Show the limits runners share through Redis (--redis URL).",
    "list": "List the DevServer instances of projects, as the CSV `bulkops stop` reads.",
    "worker": "Join a job over several hosts (--redis URL --job NAME) and work on its rows.",
    "job": "A job over several hosts: its status, or cancel it.",
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


@click.group(
    cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="bulkops")
def main() -> None:
    """Stop, start and reboot Huawei Cloud ModelArts DevServer instances in bulk, safely and fast.

    Try `bulkops demo` to see a whole run against the built-in simulator.
    """


def _run_command(name: str) -> click.Command:
    """The command for operation `name` (`bulkops stop`, `start`, `reboot`): the shared options
    (`runflags`), the operation as the only difference."""
    op = OPERATIONS[name]

    @main.command(name, help=run_help(op))
    @run_options(op)
    def command(**kw: Any) -> None:
        _run(op, kw)

    return command


def _run(op: Operation, kw: dict[str, Any]) -> None:
    """Run one operation's command; exits with its code."""
    check_input(kw)
    from bulkops.cli.interrupts import Interrupts, take_early

    interrupts = take_early()  # installed by `bulkops.cli.entry` before click and this module loaded
    if interrupts is None:
        interrupts = Interrupts()
        interrupts.install()  # first: a signal while the command starts still ends it cleanly (exit 130)
    try:
        from bulkops.cli.command_stop import run_stop_command

        code = run_stop_command(interrupts=interrupts, operation=op, **kw)
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


stop_command = _run_command("stop")
start_command = _run_command("start")
reboot_command = _run_command("reboot")
