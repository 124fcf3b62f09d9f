"""How every command ends on an error: one `bulkops: error: ...` line on stderr and an exit code.

Below both `cli` and the commands it loads lazily (`report_cli`), so that a command never imports the
group that loads it.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from bulkops.summary import EXIT_USAGE

__all__ = ["fail"]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one error line and exit."""
    click.echo(f"bulkops: error: {message}", err=True)
    sys.exit(code)
