"""Files in and out: the input read as a stream, the report written and read back.

    feed, csvrows, linebits   rows off a file, a pipe or stdin (a thread of their own), CSV lines parsed
    targets, rowcount, seen   rows validated and de-duplicated into `Target`s or `invalid` records
    report, reportfile        the JSON-lines report: one record per row, locked, repaired on resume
    reportmeta                the REPORT.meta.json sidecar (input path and fingerprint)
    report_read, resume       a report read back: summaries, `report failed`, the `--resume` state

Imports only the top level (`models`, `errors`, `validation`, `wording`); nothing from `engine`,
`cloud` or `cli`.
"""
