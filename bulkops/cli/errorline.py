"""How every command ends on an error: one `bulkops: error: ...` line on stderr and an exit code.

Below both `cli` and the commands it loads lazily (`report_cli`), so that a command never imports the
group that loads it.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from bulkops.errors import BulkOpsError
from bulkops.summary import EXIT_USAGE

__all__ = ["fail", "find_error"]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one error line and exit."""
    click.echo(f"bulkops: error: {message}", err=True)
    sys.exit(code)


def find_error(exc: BaseException) -> BulkOpsError | None:
    """The BulkOpsError inside an exception or exception group, if any."""
    if isinstance(exc, BulkOpsError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find_error(inner)
            if found is not None:
                return found
    if exc.__cause__ is not None and exc.__cause__ is not exc:
        return find_error(exc.__cause__)
    return None
