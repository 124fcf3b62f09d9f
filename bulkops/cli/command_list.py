"""`bulkops list`: the DevServer instances of some projects, filtered, as the CSV `bulkops stop` reads.

    bulkops list --project-id P [--project-id Q] [--projects-file F] [--status RUNNING]... [--name REGEX]
                 [--owner USER_ID] [--format csv|jsonl|table] [--output FILE] [--region R | --endpoint URL]

The endpoint, credentials and their checks are `stop`'s (same flags, same environment). Every check runs
before the first request: exit 2 means nothing was sent. Projects are listed one after another, each page
through `engine.listing.list_servers` (one token bucket, `--rate`; 429s slow it down; 5xx retried).
`--status` and `--name` filter what comes back (the API has no such filter); `--owner` is the API's own.

Exit status: 0 every project was listed; 1 some project could not be (one `bulkops: error:` line each,
the output holds the projects that could); 2 usage or configuration error, nothing sent; 130 interrupted.
`--output FILE` is written beside FILE and renamed into place at the end, so FILE never holds half a row;
an interrupted listing leaves no FILE.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import anyio
import click

from bulkops import logs
from bulkops.cli.errorline import fail
from bulkops.cli.listout import FORMATS, ListWriter, server_row
from bulkops.cli.stopflags import resolve_endpoint
from bulkops.cloud.auth import Credentials
from bulkops.cloud.listing import MAX_LIMIT
from bulkops.cloud.preflight import NO_CREDENTIALS, check_credentials, check_endpoint, is_loopback
from bulkops.errors import BulkOpsError, ConfigError
from bulkops.options import RateLimit, RetryPolicy, parse_rate
from bulkops.summary import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from bulkops.validation import is_valid_project_id
from bulkops.wording import counted


def _rate(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_rate(value)
    except BulkOpsError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command("list")
@click.option(
    "--project-id",
    "project_ids",
    multiple=True,
    envvar="HUAWEICLOUD_SDK_PROJECT_ID",
    show_envvar=True,
    metavar="ID",
    help="A project to list (repeatable).",
)
@click.option("--projects-file", metavar="PATH", help="More projects: one project id per line (# comments).")
@click.option(
    "--region", envvar="HUAWEICLOUD_SDK_REGION", show_envvar=True, metavar="NAME", help="Region, as for stop."
)
@click.option(
    "--endpoint", envvar="BULKOPS_ENDPOINT", show_envvar=True, metavar="URL", help="Base URL, as for stop."
)
@click.option("--status", "statuses", multiple=True, metavar="STATUS", help="Only this status (repeatable).")
@click.option("--name", "name_re", metavar="REGEX", help="Only names this regular expression finds.")
@click.option("--owner", metavar="USER_ID", help="Only the instances of this user (the API's filter).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option("--output", "-o", metavar="FILE", help="Write here instead of standard output.")
@click.option(
    "--rate", default="10", show_default=True, callback=_rate, metavar="R", help="Most requests per second."
)
@click.option(
    "--page-size",
    type=click.IntRange(1, MAX_LIMIT),
    default=100,
    show_default=True,
    metavar="N",
    help="Per page.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    metavar="N",
    help="Per page (429s aside).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="S",
    help="Seconds for one request.",
)
@click.option("--insecure", is_flag=True, help="Allow plain http:// to a non-loopback endpoint.")
@click.option("--log-format", type=click.Choice(["json", "console"]), default=None, help="Logs on stderr.")
def list_command(**kw: Any) -> None:
    """List the DevServer instances of projects, as the CSV `bulkops stop` reads.

        bulkops list --status RUNNING --project-id P > tonight.csv && bulkops stop tonight.csv

    Credentials come from the environment as for `bulkops stop`. Exit status: 0 all listed; 1 some
    project could not be listed (the output holds the others); 2 usage error, nothing sent; 130
    interrupted.
    """
    try:
        code = run_list(kw)
    except BulkOpsError as exc:
        fail(str(exc))
    sys.exit(code)


def read_projects(project_ids: tuple[str, ...], projects_file: str | None) -> list[str]:
    """The projects to list, in order, each once; ConfigError (one line) for a bad one or none at all."""
    named = [(p.strip(), "--project-id") for p in project_ids]
    if projects_file:
        try:
            lines = Path(projects_file).read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"cannot read --projects-file {projects_file}: {why or exc}") from exc
        for n, line in enumerate(lines, start=1):
            text = line.split("#", 1)[0].strip()
            if text:
                named.append((text, f"--projects-file {projects_file} line {n}"))
    for project, where in named:
        if not is_valid_project_id(project):
            raise ConfigError(f"{where}: {project[:70]!r} is not a project id (1-64 of A-Z a-z 0-9 _ -)")
    projects = list(dict.fromkeys(p for p, _ in named))
    if not projects:
        raise ConfigError("no project: give --project-id ID (repeatable) or --projects-file PATH")
    return projects


def _matcher(kw: dict[str, Any]) -> Any:
    """The client-side filter (status, name) as a predicate on a server."""
    statuses = frozenset(s.strip().upper() for s in kw["statuses"])
    try:
        name = re.compile(kw["name_re"]) if kw["name_re"] is not None else None
    except re.error as exc:
        raise ConfigError(f"--name {kw['name_re']!r} is not a regular expression: {exc}") from exc

    def keep(server: dict[str, Any]) -> bool:
        if statuses and str(server.get("status") or "").upper() not in statuses:
            return False
        return name is None or bool(name.search(str(server.get("name") or "")))

    return keep


def run_list(kw: dict[str, Any]) -> int:
    """The whole command; returns the exit code (ConfigError before anything is sent)."""
    try:
        credentials = Credentials.from_env()
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    fmt = kw["log_format"] or ("console" if sys.stderr.isatty() else "json")
    logs.configure(fmt=fmt, level="warning", secrets=credentials.secrets() if credentials else ())
    endpoint = resolve_endpoint(kw["endpoint"], kw["region"])
    if endpoint is None:
        raise ConfigError("no endpoint: give --region (e.g. cn-north-4) or --endpoint URL")
    check_credentials(credentials)
    host, _ = check_endpoint(endpoint, insecure=kw["insecure"])
    if credentials is None and not is_loopback(host):
        raise ConfigError(NO_CREDENTIALS)
    projects = read_projects(kw["project_ids"], kw["projects_file"])
    keep = _matcher(kw)
    from bulkops.cloud.listing import list_query

    try:
        list_query(limit=kw["page_size"], offset=0, owner=kw["owner"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    pacing_args = (RateLimit(kw["rate"]), RetryPolicy(max_attempts=kw["max_attempts"]))
    try:
        with _output(kw["output"]) as stream:
            writer = ListWriter(stream, kw["fmt"])
            counts = anyio.run(_list_all, endpoint, credentials, kw, projects, pacing_args, keep, writer)
            writer.close()
    except KeyboardInterrupt:
        click.echo("bulkops: interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `bulkops list | head`: the reader has all it wanted
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:  # a full disk: the listing stops there
        where = kw["output"] or "standard output"
        click.echo(f"bulkops: error: cannot write {where}: {exc.strerror or exc}", err=True)
        return EXIT_FAILED
    listed, written, failed = counts
    click.echo(
        f"bulkops: {counted(written, 'server')} written of {listed} listed in "
        f"{counted(len(projects) - failed, 'project')}"
        + (f"; {counted(failed, 'project')} could not be listed" if failed else ""),
        err=True,
    )
    return EXIT_FAILED if failed else EXIT_OK


async def _list_all(
    endpoint: str,
    credentials: Credentials | None,
    kw: dict[str, Any],
    projects: list[str],
    pacing_args: tuple[RateLimit, RetryPolicy],
    keep: Any,
    writer: ListWriter,
) -> tuple[int, int, int]:
    """(servers listed, rows written, projects that failed); one error line per failed project."""
    from bulkops.cloud.api import DevServerClient
    from bulkops.engine.listing import ListFailed, ListPacing, list_servers

    pacing = ListPacing(*pacing_args)
    listed = written = failed = 0
    async with DevServerClient(
        endpoint, credentials, timeout=kw["timeout"], concurrency=2, insecure=kw["insecure"]
    ) as client:
        for project in projects:
            try:
                servers = list_servers(client, project, pacing, owner=kw["owner"], page_size=kw["page_size"])
                async for server in servers:
                    listed += 1
                    if keep(server):
                        writer.write(server_row(project, server))
                        written += 1
            except ListFailed as exc:
                failed += 1
                click.echo(f"bulkops: error: {exc}", err=True)
    return listed, written, failed


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    """Standard output, or a temporary file beside PATH renamed onto it when the block ends without error."""
    if path is None or path == "-":
        yield sys.stdout
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fh = open(tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(f"cannot write --output {path}: {exc.strerror or exc}") from exc
    try:
        with fh:
            yield fh
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
