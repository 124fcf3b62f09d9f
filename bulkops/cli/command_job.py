"""A job over several hosts (issue 15): `bulkops worker`, `bulkops job status` and `bulkops job cancel`
(the coordinator's part of `bulkops stop --job` is `cli.jobrun`). The work is in `bulkops.job`; this
is flags, checks, exit codes. Errors are one `bulkops: error:` line (exit 2, nothing sent).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import anyio
import click

from bulkops import logs
from bulkops.cli.errorline import fail, find_error
from bulkops.cli.interrupts import Interrupts, take_early
from bulkops.cli.jobrun import redis_call
from bulkops.cli.stopflags import resolve_endpoint
from bulkops.cloud.auth import Credentials
from bulkops.cloud.preflight import NO_CREDENTIALS, check_credentials, check_endpoint, is_loopback
from bulkops.errors import BulkOpsError, ConfigError
from bulkops.redis.client import ENV_URL, open_client
from bulkops.redis.naming import redact_url
from bulkops.summary import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RunStats

if TYPE_CHECKING:
    pass


# -- bulkops worker -----------------------------------------------------------------------------------------


@click.command("worker")
@click.option("--redis", "redis_url", required=True, envvar=ENV_URL, show_envvar=True, metavar="URL",
              help="The Redis the job lives in (as given to its coordinator).")  # fmt: skip
@click.option("--job", "job_name", required=True, metavar="NAME", help="The job to join.")
@click.option("--endpoint", envvar="BULKOPS_ENDPOINT", show_envvar=True, metavar="URL",
              help="The job's endpoint (checked against it). [default: the job's]")  # fmt: skip
@click.option("--region", envvar="HUAWEICLOUD_SDK_REGION", show_envvar=True, metavar="NAME",
              help="The job's region, e.g. cn-north-4 (checked against its endpoint).")  # fmt: skip
@click.option("--concurrency", type=click.IntRange(min=1), default=None, metavar="C",
              help="Most requests in flight on this host. [default: the job's]")  # fmt: skip
@click.option("--redis-grace", type=click.FloatRange(min=0), default=300.0, show_default=True, metavar="S",
              help="Seconds Redis may be away (in-flight rows finish) before exit 1.")  # fmt: skip
@click.option("--log-format", type=click.Choice(["json", "console"]), default=None)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning")
@click.option("--quiet", "-q", is_flag=True, help="Errors only.")
def worker_command(**kw: Any) -> None:
    """Join job NAME (started by `bulkops stop INPUT --redis URL --job NAME`) and work on its rows until
    it is done.

    Credentials come from the environment (HUAWEICLOUD_SDK_AK/SK or BULKOPS_AUTH_TOKEN) and must be the
    job's credential. Exit status: 0 the job is done; 1 it was cancelled, Redis was away longer than
    --redis-grace, or the job is gone from Redis;
    2 usage error or refused (nothing sent); 130 interrupted (rows in hand finished, the rest handed back).
    """
    interrupts = take_early()
    if interrupts is None:
        interrupts = Interrupts()
        interrupts.install()
    try:
        code = _worker(kw, interrupts)
    except BulkOpsError as exc:
        fail(str(exc), 2 if isinstance(exc, ConfigError) else EXIT_FAILED)
    except BaseExceptionGroup as group:
        found = find_error(group)
        if found is None:
            raise
        fail(str(found), 2 if isinstance(found, ConfigError) else EXIT_FAILED)
    finally:
        interrupts.uninstall(exiting=True)
    sys.exit(code)


def _worker(kw: dict[str, Any], interrupts: Interrupts) -> int:
    from bulkops.cli.command_stop import event_loop_options
    from bulkops.job.coordinator import read_meta
    from bulkops.job.grace import Grace
    from bulkops.job.keys import JobKeys
    from bulkops.job.meta import CANCELLED, DONE
    from bulkops.job.worker import consumer_name, presence, work

    try:
        credentials = Credentials.from_env()
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    fmt = kw["log_format"] or ("console" if sys.stderr.isatty() else "json")
    logs.configure(fmt=fmt, level="error" if kw["quiet"] else kw["log_level"],
                   secrets=credentials.secrets() if credentials else ())  # fmt: skip
    keys = JobKeys(kw["job_name"])
    url = kw["redis_url"]
    meta = redis_call(url, lambda: _meta(url, keys, read_meta))
    if meta is None:
        raise ConfigError(f"no job {keys.name} in Redis at {redact_url(url)}")
    endpoint = resolve_endpoint(kw["endpoint"], kw["region"]) or meta.fields.get("endpoint", "")
    meta.check_joiner(endpoint, credentials)
    check_credentials(credentials)
    host, _plain = check_endpoint(endpoint, insecure=True)
    if credentials is None and not is_loopback(host):
        raise ConfigError(NO_CREDENTIALS)
    if meta.state in (DONE, CANCELLED):
        click.echo(f"bulkops: job {keys.name} is {meta.state}: nothing to do", err=True)
        return EXIT_OK if meta.state == DONE else EXIT_FAILED
    options = meta.options(endpoint, credentials, kw["concurrency"])
    stats = RunStats(command=options.operation.name)
    ended: list[str] = []

    async def main() -> None:
        client = open_client(url)
        consumer = consumer_name()
        try:
            async with presence(client, keys, consumer):

                def attach(run: Any, scope: anyio.CancelScope) -> None:
                    interrupts.attach(
                        on_interrupt=lambda _: run.wind_down(), on_abort=lambda _: scope.cancel()
                    )

                source = await work(
                    client, url, keys, consumer, options, stats=stats, grace=Grace(kw["redis_grace"]),
                    on_run=attach,
                )  # fmt: skip
                ended.append(source.state)
        finally:
            interrupts.detach()
            with anyio.CancelScope(shield=True):
                await client.aclose()

    anyio.run(main, backend_options=event_loop_options())
    stats.interrupted = interrupts.received
    if not kw["quiet"]:
        click.echo(stats.render(), err=True)
    if stats.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if ended and ended[0] == CANCELLED else EXIT_OK


async def _meta(url: str, keys: Any, read: Any) -> Any:
    client = open_client(url)
    try:
        return await read(client, keys)
    finally:
        await client.aclose()


# -- bulkops job status / cancel -----------------------------------------------------------------------------


@click.group("job")
def job_group() -> None:
    """A job over several hosts: its progress (`status`), or stop it handing out rows (`cancel`)."""


@job_group.command("status")
@click.option("--redis", "redis_url", required=True, envvar=ENV_URL, show_envvar=True, metavar="URL")
@click.option("--job", "job_name", required=True, metavar="NAME")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def status_command(redis_url: str, job_name: str, as_json: bool) -> None:
    """Rows final, queued and in flight (per worker and project), the shared rates, the workers alive."""
    from bulkops.job.keys import check_name
    from bulkops.job.status import job_status, render

    try:
        name = check_name(job_name)
        status = redis_call(redis_url, lambda: _with_client(redis_url, lambda c: job_status(c, name)))
    except BulkOpsError as exc:
        fail(str(exc))
    if status is None:
        fail(f"no job {job_name} in Redis at {redact_url(redis_url)}")
    click.echo(json.dumps(status, sort_keys=True) if as_json else render(status))
    sys.exit(EXIT_OK)


@job_group.command("cancel")
@click.option("--redis", "redis_url", required=True, envvar=ENV_URL, show_envvar=True, metavar="URL")
@click.option("--job", "job_name", required=True, metavar="NAME")
def cancel_command(redis_url: str, job_name: str) -> None:
    """Stop handing out the job's rows: rows in hand finish, the others are recorded skipped."""
    from bulkops.job.keys import check_name
    from bulkops.job.status import cancel_job

    try:
        name = check_name(job_name)
        before = redis_call(redis_url, lambda: _with_client(redis_url, lambda c: cancel_job(c, name)))
    except BulkOpsError as exc:
        fail(str(exc))
    if before is None:
        fail(f"no job {job_name} in Redis at {redact_url(redis_url)}")
    click.echo(f"job {job_name}: " + ("cancelled" if before == "running" else f"already {before}"), err=True)
    sys.exit(EXIT_OK)


async def _with_client(url: str, call: Any) -> Any:
    client = open_client(url)
    try:
        return await call(client)
    finally:
        await client.aclose()
