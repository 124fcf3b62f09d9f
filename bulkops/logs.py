"""structlog configuration: JSON lines or console output on standard error. Only the CLI calls this.

Library modules only call `structlog.get_logger()` and log stable dotted event names
(`bulkops.run.start`, `bulkops.stop.retry`, `bulkops.circuit.open`, ...) with key-value fields.

Decisions:
* `make_filtering_bound_logger(level)`: a call below the level is a no-op method, so per-request debug
  events cost nothing on the hot path at the default level.
* A redaction processor replaces every known secret value (AK, SK, tokens) in every string field with
  `***` before rendering: defence in depth, since no code logs a secret on purpose.
* Output goes through `write_line`, which the progress display can wrap so that a log line never tears the
  progress bar.
* `output_logger()` renders through the same processors and writer but is never filtered by `--log-level`:
  it carries the run's own output off a terminal (`bulkops.run.progress`, `bulkops.run.summary`), which
  must reach a CI log at the default level `warning`. `--quiet` simply does not use it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO

import structlog

LEVELS = ("debug", "info", "warning", "error")


class _Configured:
    """The processors and writer of the last `configure()`, for `output_logger()`."""

    processors: list[Any] | None = None
    writer: LineWriter | None = None


class _Redact:
    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(s for s in secrets if s)

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not self._secrets:
            return event
        for key, value in event.items():
            if isinstance(value, str):
                text = value
                for secret in self._secrets:
                    if secret in text:
                        text = text.replace(secret, "***")
                event[key] = text
        return event


class LineWriter:
    """A file-like target for structlog that hands each rendered line to `write_line`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.write_line: Callable[[str], None] = self._plain

    def _plain(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def msg(self, message: str) -> None:
        self.write_line(message)

    log = debug = info = warning = warn = error = critical = exception = msg


def configure(
    *,
    fmt: str,
    level: str = "info",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> LineWriter:
    """Configure structlog for the process; returns the writer (for the progress display to wrap)."""
    writer = LineWriter(stream if stream is not None else sys.stderr)
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=writer.stream.isatty())
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _Redact(secrets),
        renderer,
    ]
    _Configured.processors, _Configured.writer = processors, writer
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=lambda *_: writer,
        cache_logger_on_first_use=False,
    )
    return writer


def output_logger() -> Any:
    """A logger for the run's output events: configured as `configure()` made it, never level-filtered."""
    if _Configured.processors is None or _Configured.writer is None:
        return structlog.get_logger("bulkops.run")
    return structlog.wrap_logger(
        _Configured.writer,
        processors=_Configured.processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
