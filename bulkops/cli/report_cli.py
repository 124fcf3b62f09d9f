"""`bulkops report`: read a run's JSON-lines report back.

    bulkops report summarize REPORT [--format text|markdown|json] [--top N] [--failures N]
                                                          outcomes per project, top errors, slowest, rate;
                                                          markdown: a change ticket (`report_ticket`)
    bulkops report failed REPORT [-o PATH] [--include-not-found] [--code C]... [--exclude-code C]...
                                                          the rows to retry, as a CSV `bulkops stop` reads

Both count rows, each by its last record (a resumed report has several records for a row sent again).

Both stream the report (see `report_read` for what they keep in memory). REPORT may be `-` for standard
input. A file that is not a report, or whose last line is torn, is one error line and exit 2.
The tables fit 100 columns; `--json` is the machine form, with every figure.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from typing import TextIO, TypeVar

import click

from bulkops.cli.errorline import fail
from bulkops.cloud.outcomes import NON_RETRYABLE_CODES
from bulkops.errors import BulkOpsError
from bulkops.io.report_read import ReportDigest, retry_rows, summarize
from bulkops.models import Outcome
from bulkops.wording import counted

T = TypeVar("T")

_COLUMNS = [o.value for o in Outcome]
_HEADERS = {"already_stopped": "already", "already_running": "already"}
_WIDTH = 100


def _guard(work: Callable[[], T]) -> T:
    """Run `work`; a BulkOpsError becomes one `bulkops: error:` line and exit 2."""
    try:
        return work()
    except BulkOpsError as exc:
        fail(str(exc))


@click.group("report", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def report() -> None:
    """Read a report written by `bulkops stop`: summarize it, or list the rows to retry."""


@report.command("summarize")
@click.argument("report_path", metavar="REPORT")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
    help="text: for the terminal; markdown: for a change ticket (command, times, SHA-256, failures); "
    "json: every figure, for machines.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "--top",
    type=click.IntRange(0, 1000),
    default=5,
    show_default=True,
    metavar="N",
    help="How many error codes and slowest rows to show.",
)
@click.option(
    "--failures",
    type=click.IntRange(0),
    default=50,
    show_default=True,
    metavar="N",
    help="markdown and json: list at most N rows that did not succeed.",
)
def summarize_command(report_path: str, fmt: str, as_json: bool, top: int, failures: int) -> None:
    """Outcomes per project, the top error codes, the slowest rows and the achieved rate of REPORT.

    Counts rows, each by its last record: a report continued with --resume holds several records for a
    row sent again, and the row counts once (the output says how many records there are).
    `bulkops report failed` gives the rows still to do. `--format markdown` is a summary to paste into a
    change ticket: the command line, start and end, the report's SHA-256, outcomes per project and the
    rows that did not succeed with their errors.
    """
    if as_json or fmt != "text":
        from bulkops.io.ticket import read_ticket

        ticket = _guard(lambda: read_ticket(report_path, top=top, limit=failures))
        if as_json or fmt == "json":
            click.echo(json.dumps(ticket.as_dict(), ensure_ascii=False))
        else:
            from bulkops.cli.report_ticket import render_markdown

            click.echo(render_markdown(ticket), nl=False)
        return
    summary = _guard(lambda: summarize(report_path, top=top))
    click.echo(render_summary(summary, report_path))


def render_summary(s: ReportDigest, path: str) -> str:
    """The human summary of a report, at most 100 columns wide."""
    d = s.as_dict()
    out: list[str] = []
    unsuccessful = s.rows - s.succeeded
    share = f" ({100 * s.succeeded / s.rows:.1f}%)" if s.rows else ""
    records = f" ({counted(s.records, 'record')})" if s.records != s.rows else ""
    out.append(f"{path}: {counted(s.rows, 'row')}{records}, {counted(len(s.per_project), 'project')}")
    out.append(f"succeeded {s.succeeded}{share}, did not succeed {unsuccessful}")
    if s.repeated_lines:
        out.append(
            f"{counted(s.repeated_lines, 'row')} with more than one record (a resumed run): each counts "
            "once, by its last record; `bulkops report failed` lists what is still to do"
        )
    if not s.records:
        return "\n".join(out)
    out.append("")
    out.extend(_project_table(s))
    errors = s.top_errors()
    if errors:
        out.append("")
        more = f" (top {len(errors)} of {len(s.errors)})" if len(s.errors) > len(errors) else ""
        out.append(f"error codes of rows that did not succeed{more}:")
        code_w = max(10, *(len(code) for code, _ in errors))
        out.append(f"  {'count':>7}  {'code':<{code_w}}  sample message")
        for code, e in errors:
            line = f"  {e.count:>7}  {code:<{code_w}}  {e.sample}"
            out.append(_fit(line))
    slowest = s.slowest
    if slowest:
        out.append("")
        out.append("slowest rows:")
        out.append(f"  {'elapsed':>9}  {'tries':>5}  {'outcome':<15}  {'line':>8}  id")
        for rec in slowest:
            secs = f"{(rec.get('elapsed_ms') or 0) / 1000:.2f}s"
            out.append(
                _fit(
                    f"  {secs:>9}  {rec.get('attempts', 0):>5}  {rec['outcome']:<15}  "
                    f"{rec['line']:>8}  {rec.get('id')}"
                )
            )
    out.append("")
    if d["rows_per_s"] is not None:
        out.append(
            f"rate: {d['rows_per_s']:.1f} rows/s ({counted(s.sent_records, 'row')} sent, finished over "
            f"{d['span_s']:.1f}s), {d['requests_per_s']:.1f} requests/s ({s.requests} requests)"
        )
        out.append(f"      first finished {d['first_finished_at']}, last {d['last_finished_at']}")
    else:
        out.append(f"rate: {counted(s.sent_records, 'row')} sent; too few to measure a rate")
    return "\n".join(_wrap(line) for line in out)


def _project_table(s: ReportDigest) -> list[str]:
    seen = set(s.outcomes)
    cols = [c for c in _COLUMNS if c in seen] + sorted(seen - set(_COLUMNS))
    abbreviated = [c for c in cols if c in _HEADERS]
    heads = [_HEADERS[c] if c in _HEADERS and len(abbreviated) == 1 else c for c in cols]
    pw = max(7, *(len(p) for p in s.per_project))
    widths = [max(len(h), len(str(s.outcomes[c]))) for h, c in zip(heads, cols, strict=True)]
    tw = max(5, len(str(s.rows)))
    rows = [f"{'project':<{pw}}  " + "  ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))]
    rows[0] += f"  {'total':>{tw}}"
    for project, counts in sorted(s.per_project.items()):
        cells = "  ".join(f"{counts.get(c, 0):>{w}}" for c, w in zip(cols, widths, strict=True))
        rows.append(f"{project:<{pw}}  {cells}  {sum(counts.values()):>{tw}}")
    cells = "  ".join(f"{s.outcomes[c]:>{w}}" for c, w in zip(cols, widths, strict=True))
    rows.append(f"{'total':<{pw}}  {cells}  {s.rows:>{tw}}")
    if len(abbreviated) == 1:
        rows.append(f"(already = {abbreviated[0]})")
    return rows


def _fit(line: str) -> str:
    return line if len(line) <= _WIDTH else line[: _WIDTH - 3] + "..."


def _wrap(line: str) -> str:
    """Break a long prose line at a space before column 100 (tables are cut by `_fit` instead)."""
    if len(line) <= _WIDTH:
        return line
    parts: list[str] = []
    while len(line) > _WIDTH:
        cut = line.rfind(" ", 0, _WIDTH)
        if cut <= 0:
            break
        parts.append(line[:cut])
        line = "  " + line[cut + 1 :]
    parts.append(line)
    return "\n".join(parts)


@report.command("failed")
@click.argument("report_path", metavar="REPORT")
@click.option(
    "-o",
    "--output",
    "output",
    default="-",
    metavar="PATH",
    help="Write the CSV here instead of standard output.",
)
@click.option(
    "--include-not-found",
    is_flag=True,
    help="Also list rows the API answered not_found (left out by default: the id is wrong or gone).",
)
@click.option(
    "--code",
    "codes",
    multiple=True,
    metavar="CODE",
    help="List only rows whose last error_code is CODE (repeatable); lists them even when CODE is one "
    "that cannot succeed on a retry, e.g. --code ModelArts.6310.",
)
@click.option(
    "--exclude-code",
    "exclude_codes",
    multiple=True,
    metavar="CODE",
    help="Leave out rows whose last error_code is CODE (repeatable).",
)
def failed_command(
    report_path: str,
    output: str,
    include_not_found: bool,
    codes: tuple[str, ...],
    exclude_codes: tuple[str, ...],
) -> None:
    """The rows of REPORT to retry, as a CSV (header project_id,id) that `bulkops stop` reads.

    A row is listed when no record of it succeeded and its last record is failed, or skipped for a
    reason other than being a duplicate (e.g. an open circuit). Invalid rows are never listed (they
    cannot be sent as they are); not_found rows only with --include-not-found.

    Left out by default, because a retry cannot make them succeed: ModelArts.6310 (the instance's status
    does not allow a stop) and rows whose instance was last seen in ERROR. --code CODE lists only the
    rows with that code, these included.

        bulkops report failed run.jsonl > retry.csv && bulkops stop retry.csv --report retry.jsonl ...
    """
    result = _guard(
        lambda: retry_rows(
            report_path,
            include_not_found=include_not_found,
            codes=frozenset(codes) if codes else None,
            exclude_codes=frozenset(exclude_codes),
        )
    )
    if output == "-":
        _write_csv(sys.stdout, result.rows)
    else:
        try:
            with open(output, "w", encoding="utf-8", newline="") as fh:
                _write_csv(fh, result.rows)
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
    notes = []
    if result.non_retryable_excluded:
        which = ", ".join(sorted(NON_RETRYABLE_CODES))
        notes.append(
            f"{counted(result.non_retryable_excluded, 'row')} that cannot succeed on a retry left out "
            f"({which} or an instance in ERROR; --code {which} lists them)"
        )
    if result.code_excluded:
        by = "--code/--exclude-code" if codes and exclude_codes else ("--code" if codes else "--exclude-code")
        notes.append(f"{counted(result.code_excluded, 'row')} left out by {by}")
    if result.not_found_excluded:
        notes.append(
            f"{counted(result.not_found_excluded, 'not_found row')} left out (--include-not-found adds them)"
        )
    note = "".join(f"; {n}" for n in notes)
    where = "" if output == "-" else f" to {output}"
    click.echo(f"bulkops: {counted(len(result.rows), 'row')} to retry{where}{note}", err=True)


def _write_csv(stream: TextIO, rows: list[tuple[str, str]]) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(("project_id", "id"))
    writer.writerows(rows)
    stream.flush()
