"""`--from-report REPORT`: the rows whose instances the run that wrote REPORT changed, as rows to send.

    bulkops stop ids.csv --report evening.jsonl
    bulkops start --from-report evening.jsonl --report morning.jsonl   # starts what the stop stopped

A (project_id, id) is taken when any of its records says the run itself changed the instance
(`operations.acted_on`: `accepted`, `stopped`, `running`, or an "on its way" answer after a lost one);
never for `already_*` on the first attempt (the instance was there before the run), `failed`, `not_found`,
`invalid` or `skipped`. Each row keeps the `line` of its first record (its line in the evening's INPUT),
so the two reports line up; rows come in line order. `--resume` works on them as on a file: the report is
the input its fingerprint (`reportmeta`) is taken of.

Memory: the taken rows only (a dict of (project_id, id) -> line), not the report.
"""

from __future__ import annotations

from bulkops.io.report_read import iter_records
from bulkops.models import Target
from bulkops.operations import acted_on


def acted_rows(path: str) -> list[Target]:
    """The rows of the report at `path` whose instances its run changed, in line order.

    ReportError (one line) when the file cannot be read or is not a bulkops report.
    """
    taken: dict[tuple[str, str], int] = {}
    for rec in iter_records(path):
        pid, iid, line = rec.get("project_id"), rec.get("id"), rec.get("line")
        if not isinstance(pid, str) or not isinstance(iid, str) or not isinstance(line, int):
            continue
        key = (pid, iid)
        if key in taken or not acted_on(rec["outcome"], rec.get("error_code"), rec.get("attempts")):
            continue
        taken[key] = line
    return [Target(line, pid, iid) for (pid, iid), line in sorted(taken.items(), key=lambda kv: kv[1])]
