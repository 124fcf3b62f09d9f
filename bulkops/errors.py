"""The one error tree of bulkops.

    BulkOpsError                    root: everything bulkops raises on purpose
    ├── ConfigError                 bad options, credentials or endpoint: exit 2, nothing sent
    ├── InputError                  unreadable input or a header without an id column: exit 2, nothing sent
    └── ReportError                 the report cannot be written, or --resume cannot read it: exit 2

A failed instance is never an exception: it is a `Result` with outcome `failed`. Only errors that make the
whole run impossible propagate. Messages are one line, meant for a human, and never contain a secret.
"""

from __future__ import annotations


class BulkOpsError(Exception):
    """Root of every error bulkops raises on purpose."""


class ConfigError(BulkOpsError):
    """Options, credentials or endpoint are unusable; nothing was sent."""


class InputError(BulkOpsError):
    """The input cannot be read as a list of targets; nothing was sent."""


class ReportError(BulkOpsError):
    """The report cannot be written, or an existing one cannot be resumed from."""
