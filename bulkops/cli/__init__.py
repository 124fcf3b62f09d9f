"""The command line: `bulkops` and its sub-commands, and what a run shows and writes around the engine.

    entry         the console script: signal handlers first, then `main`
    main          the click group (sub-commands loaded lazily)
    command_stop, stopflags, plan   `bulkops stop`: its options, the dry-run plan, the confirmation
    runner, runlog, progress        one run: engine -> report, its log lines, the progress display
    interrupts, errorline           SIGINT/SIGTERM as a wind-down; one-line errors
    report_cli, command_limits, demo   `bulkops report ...`, `bulkops limits`, `bulkops demo`

The top layer: it may import every other part of the package; nothing imports it (but `__main__`).
Kept empty so that `bulkops.cli.entry` loads nothing before the signal handlers are in place.
"""
