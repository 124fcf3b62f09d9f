"""`bulkops limits --redis URL [--json]`: what runners share through Redis now.

Per endpoint, credential (its keyed hash, never the credential) and project: the configured rate in use
(the lowest a live runner gave), the rate learned from the gateway, the live runners, the 429s of the last
five minutes and a hold still running. A table of at most 100 columns, or one JSON object (`--json`).
Redis unreachable, or a bad URL: one `bulkops: error:` line, exit 2. The URL's password never appears.

`run_limits_command` is the body; `limits_command` the click command the CLI registers.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

import anyio
import click

from bulkops.errors import ConfigError
from bulkops.redis.client import ENV_URL, open_client, reason, redis_errors
from bulkops.redis.naming import redact_url
from bulkops.redis.snapshot import SharedProject, read_snapshot

EXIT_OK = 0
EXIT_USAGE = 2


async def _read(url: str, password: str | None) -> list[SharedProject]:
    client = open_client(url, password=password)
    try:
        return await read_snapshot(client)
    except redis_errors() as exc:
        raise ConfigError(f"Redis at {redact_url(url)} is unreachable: {reason(exc, url, password)}") from exc
    finally:
        await client.aclose()


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_table(rows: list[SharedProject], url: str) -> str:
    """The human form: one line per shared bucket, grouped by endpoint and credential."""
    if not rows:
        return f"nothing shared at {redact_url(url)} (no runner in the last five minutes)"
    out: list[str] = []
    head = (
        f"{'project':<34} {'configured/s':>12} {'learned/s':>10} {'runners':>7} {'429s/5min':>9} "
        f"{'held s':>7}"
    )
    group: tuple[str, str] | None = None
    for row in rows:
        if (row.endpoint, row.credential) != group:
            group = (row.endpoint, row.credential)
            if out:
                out.append("")
            out.append(f"{row.endpoint or '(endpoint unknown)'}  credential {row.credential}")
            out.append(head)
        project = "* (credential-wide)" if row.project_id == "*" else row.project_id
        held = f"{row.held_for:.1f}" if row.held_for > 0 else "-"
        out.append(
            f"{project[:34]:<34} {_rate(row.configured):>12} {_rate(row.learned):>10} {row.runners:>7} "
            f"{row.throttled:>9} {held:>7}"
        )
    return "\n".join(out)


def run_limits_command(
    url: str, as_json: bool, *, password: str | None = None, out: TextIO | None = None
) -> int:
    """Print what is shared at `url` (a table, or JSON with `as_json`); the exit code (0, or 2 when Redis
    cannot be read, with one error line on standard error)."""
    stream = out if out is not None else sys.stdout
    try:
        rows = anyio.run(_read, url, password)
    except ConfigError as exc:
        print(f"bulkops: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if as_json:
        document = {"redis": redact_url(url), "buckets": [row.as_dict() for row in rows]}
        print(json.dumps(document, ensure_ascii=False), file=stream)
    else:
        print(render_table(rows, url), file=stream)
    return EXIT_OK


@click.command("limits", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--redis",
    "url",
    required=True,
    envvar=ENV_URL,
    metavar="URL",
    help="redis://, rediss:// or unix:// URL; the password from the URL or $BULKOPS_REDIS_PASSWORD.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object, for machines.")
def limits_command(url: str, as_json: bool) -> None:
    """What runners share through Redis now: per project the configured and learned rate, the runners
    seen, and the 429s of the last five minutes."""
    sys.exit(run_limits_command(url, as_json))
