"""A runbook step in Python: stop every instance in a CSV, keep a report, write the rows to retry.

    python examples/runbook_stop.py ids.csv --endpoint https://modelarts.cn-north-4.myhuaweicloud.com \
        --report run.jsonl --retry retry.csv

Credentials come from the environment as `bulkops stop` reads them (HUAWEICLOUD_SDK_AK/SK, or
BULKOPS_AUTH_TOKEN); the endpoint from --endpoint or BULKOPS_ENDPOINT (e.g. a `bulkops simulate` URL).
Exit status: 0 when every row succeeded, 1 when some did not (they are in --retry), as `bulkops stop`;
130 on Ctrl-C or SIGTERM: the first lets the requests in flight finish (`run.wind_down()`), a second ends at
once; either way every finished row is in the report and the rows to retry so far are written.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import sys
from collections import Counter

import anyio

import bulkops


async def stop_on_signal(run: bulkops.Run, scope: anyio.CancelScope, interrupted: list[int]) -> None:
    """First SIGINT/SIGTERM: stop gracefully (in-flight requests finish); a second: cancel at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            interrupted.append(signum)
            if len(interrupted) == 1:
                run.wind_down()
            else:
                scope.cancel()


async def stop_all(
    csv_path: str, endpoint: str, report_path: str, rate: float, interrupted: list[int]
) -> tuple[Counter[str], list[tuple[str, str]]]:
    """Stop the rows of `csv_path`, writing every result to the report; (outcome counts, rows to retry)."""
    options = bulkops.Options(
        endpoint=endpoint,
        credentials=bulkops.Credentials.from_env(),
        rate=bulkops.RateLimit(rate),
        concurrency=32,
    )
    targets = bulkops.read_targets(csv_path, default_project=os.environ.get("HUAWEICLOUD_SDK_PROJECT_ID"))
    writer = bulkops.ReportWriter.open(report_path, append=False)
    outcomes: Counter[str] = Counter()
    retry: list[tuple[str, str]] = []
    try:
        async with bulkops.stop_instances(targets, options) as run, anyio.create_task_group() as tg:
            tg.start_soon(stop_on_signal, run, tg.cancel_scope, interrupted)
            async for result in run:
                writer.write(result)  # one record per row, flushed: the report is the checkpoint
                outcomes[result.outcome.value] += 1
                retryable = result.outcome is bulkops.Outcome.FAILED or (
                    result.outcome is bulkops.Outcome.SKIPPED and result.error_code != "bulkops.duplicate"
                )
                if retryable and result.project_id and result.id:
                    retry.append((result.project_id, result.id))
            tg.cancel_scope.cancel()  # every row is done: stop listening for signals
    finally:
        writer.close()
    return outcomes, retry


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("csv_path", help="input CSV (project_id,id)")
    parser.add_argument("--endpoint", default=os.environ.get("BULKOPS_ENDPOINT"), help="API base URL")
    parser.add_argument("--report", default="runbook-report.jsonl", help="JSON-lines report to write")
    parser.add_argument("--retry", default="runbook-retry.csv", help="CSV of rows to retry")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second per project")
    args = parser.parse_args(argv)
    if not args.endpoint:
        parser.error("give --endpoint or set BULKOPS_ENDPOINT")
    interrupted: list[int] = []
    try:
        outcomes, retry = anyio.run(
            stop_all, args.csv_path, args.endpoint, args.report, args.rate, interrupted
        )
    except bulkops.BulkOpsError as exc:
        print(f"runbook_stop: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the run listened for signals: nothing was sent yet
        print("runbook_stop: interrupted", file=sys.stderr)
        return 130
    with open(args.retry, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(("project_id", "id"))
        out.writerows(retry)
    print(", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    print(f"report: {args.report}; {len(retry)} rows to retry in {args.retry}")
    if interrupted:
        print(f"runbook_stop: interrupted: finished rows are in {args.report}", file=sys.stderr)
        return 130
    unsuccessful = sum(n for k, n in outcomes.items() if not bulkops.Outcome(k).succeeded)
    return 1 if unsuccessful else 0


if __name__ == "__main__":
    sys.exit(main())
