"""The `bulkops` script's first step: for `bulkops stop` (and `start`, `reboot`), catch SIGINT/SIGTERM before
anything heavy loads.

A stop run may be started by `timeout` or a runbook that signals it at once; until the handlers are in, a
signal kills the process with no summary (exit 143). Installing them here, before click and the command
modules are imported, leaves only the interpreter's own start-up uncovered (tens of milliseconds, with
nothing sent and no report yet). Every other command keeps Python's default Ctrl-C.
"""

from __future__ import annotations

import sys


def main() -> None:
    """The console script: `bulkops ...` (and `python -m bulkops ...`)."""
    if len(sys.argv) > 1 and sys.argv[1] in ("stop", "start", "reboot"):
        from bulkops.cli.interrupts import install_early

        install_early()
    from bulkops.cli.main import main as cli_main

    cli_main()
