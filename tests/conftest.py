"""Shared test fixtures: async tests run on asyncio through anyio's pytest plugin; a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from _redis import RedisServer


@pytest.fixture
def anyio_backend() -> str:
    """Run every `@pytest.mark.anyio` test on asyncio, the loop bulkops uses."""
    return "asyncio"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free port for one test (skipped locally, failed in CI, if missing)."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults: a CLI test run in-process configures a level filter
    (warning) that would hide the info events a later test captures."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
