"""The coordinator's part of `bulkops stop|start|reboot INPUT --redis URL --job NAME` (issue 15): the
pre-flight check of the job's name, and the run (`bulkops.job.coordinator`) with its report, summary and
exit code. Kept apart from `command_stop` (which calls it) so that neither imports the other's caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from bulkops.cli.errorline import fail, find_error
from bulkops.cli.interrupts import Interrupts
from bulkops.errors import ConfigError
from bulkops.options import Options
from bulkops.redis.client import reason, redis_errors
from bulkops.redis.naming import redact_url
from bulkops.summary import EXIT_FAILED, RunStats

if TYPE_CHECKING:
    from bulkops.cli.command_stop import Prepared


def check_coordinator(kw: dict[str, Any], options: Options, input_sha: str, resuming: bool) -> None:
    """Before anything is sent: the job name is free, or (--resume) the job is this input's."""
    from bulkops.job.coordinator import check_job

    redis_call(kw["redis_url"], lambda: check_job(
        kw["redis_url"], kw["job_name"], resuming=resuming, input_sha=input_sha, options=options
    ))  # fmt: skip


def run_coordinator(
    kw: dict[str, Any], ready: Prepared, interrupts: Interrupts, run_loop: Callable[[Any], None]
) -> RunStats:
    """Coordinate the job (`bulkops.job.coordinator`); the report's counts are the run's stats.
    `run_loop(main)` runs the coroutine function on the command's event loop (command_stop's settings)."""
    from bulkops.cli.inputs import RunInput
    from bulkops.io.reportmeta import identify
    from bulkops.job.coordinator import Coordinator, coordinate
    from bulkops.job.grace import JobError

    identity = identify(RunInput.of(kw).path)
    stats = RunStats(tallied_by_writer=True, command=ready.options.operation.name)

    def attach(c: Coordinator) -> None:
        interrupts.attach(on_interrupt=lambda _: c.wind_down(), on_abort=lambda _: c.abort())

    async def main() -> None:
        try:
            await coordinate(
                ready.items,
                ready.options,
                ready.writer,
                url=kw["redis_url"],
                job=kw["job_name"],
                input_sha=identity.sha256 if identity else "",
                report_path=None if ready.report_path == "-" else ready.report_path,
                resume=ready.resume,
                stats=stats,
                grace=kw.get("redis_grace", 300.0),
                on_start=attach,
            )
        except redis_errors() as exc:
            raise JobError(
                f"Redis at {redact_url(kw['redis_url'])} stopped answering: {reason(exc, kw['redis_url'])}; "
                "the job stays in Redis: run the same command with --resume when it is back"
            ) from exc
        finally:
            interrupts.detach()

    try:
        run_loop(main)
    except BaseException as exc:
        found = find_error(exc)
        if found is None or isinstance(exc, KeyboardInterrupt):
            raise
        ready.writer.close()
        if not isinstance(found, JobError):
            raise found from None  # refused before anything was sent: exit 2
        ready.summary(stats)
        fail(str(found), EXIT_FAILED)  # mid-job: the report holds what was final, --resume completes it
    ready.writer.close()
    stats.finished = None
    ready.summary(stats)
    return stats


def redis_call(url: str, call: Any) -> Any:
    """Run `call()` (a coroutine function) on a fresh loop; Redis trouble is one line (exit 2)."""
    try:
        return anyio.run(call)
    except redis_errors() as exc:
        raise ConfigError(f"Redis at {redact_url(url)} is unreachable: {reason(exc, url)}") from exc
