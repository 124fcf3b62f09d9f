"""Helpers shared by the reliability tests: a simulator in a background thread, request-log checks, the CLI.

The simulator runs on its own event loop in a daemon thread, so that a test can drive `bulkops` as a real
subprocess (or through click's CliRunner, which calls `anyio.run` itself) while reading the simulator's
request log in-process. Read the log only while no request is in flight (between runs), or through
`SimThread.snapshot`, which copies it on the simulator's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from bulkops.simulator import RequestRecord, Simulator, SimulatorConfig, run_simulator

#: Every environment variable bulkops reads, emptied: CliRunner runs see neither credentials nor defaults.
CLEAN_ENV = {
    "HUAWEICLOUD_SDK_AK": "",
    "HUAWEICLOUD_SDK_SK": "",
    "HUAWEICLOUD_SDK_SECURITY_TOKEN": "",
    "BULKOPS_AUTH_TOKEN": "",
    "HUAWEICLOUD_SDK_PROJECT_ID": "",
    "HUAWEICLOUD_SDK_REGION": "",
    "BULKOPS_ENDPOINT": "",
}

SUCCESS_CODES = frozenset({"ModelArts.6307", "ModelArts.6308"})
REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


class SimThread:
    """`with SimThread(config) as sim:` serves a simulator on 127.0.0.1 from a background thread."""

    def __init__(self, config: SimulatorConfig, *, start_timeout: float = 10.0) -> None:
        self.config = config
        self._start_timeout = start_timeout
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.sim: Simulator | None = None
        self._thread = threading.Thread(target=self._main, name="simulator", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with run_simulator(self.config) as sim:
            self.sim = sim
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Simulator:
        self._thread.start()
        if not self._ready.wait(self._start_timeout) or self.sim is None:
            raise RuntimeError(f"simulator did not start: {self._error!r}")
        return self.sim

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15.0)

    def snapshot(self) -> list[RequestRecord]:
        """A copy of the request log, taken on the simulator's loop (safe while requests are in flight)."""
        return self.call(lambda sim: list(sim.request_log))

    def call(self, fn: Callable[[Simulator], T]) -> T:
        """`fn(sim)`, run on the simulator's loop (safe while requests are in flight)."""
        assert self._loop is not None and self.sim is not None
        sim = self.sim

        async def run() -> T:
            return fn(sim)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10.0)


def is_success_answer(rec: RequestRecord) -> bool:
    """True when the answer told the client its stop is done (200, ModelArts.6307/6308)."""
    return rec.http_status == 200 or rec.error_code in SUCCESS_CODES


def stops_after_success(log: Iterable[RequestRecord]) -> list[tuple[str, str]]:
    """Every (project, id) that got a PUT after a success answer for it, in arrival order."""
    done: set[tuple[str, str]] = set()
    bad: list[tuple[str, str]] = []
    for rec in sorted(log, key=lambda r: r.time):
        key = (rec.project_id, rec.id)
        if rec.method == "PUT" and key in done:
            bad.append(key)
        if is_success_answer(rec):
            done.add(key)
    return bad


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a `python -m bulkops` subprocess: no inherited credentials or endpoint."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HUAWEICLOUD_SDK_", "BULKOPS_")) and k not in ("PYTHONWARNINGS",)
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def spawn(args: Sequence[str], env: dict[str, str], **kw: Any) -> subprocess.Popen[bytes]:
    """Start `python -m bulkops ARGS` with stdout and stderr captured (stdin: `stdin=`, else none)."""
    return subprocess.Popen(
        [sys.executable, "-m", "bulkops", *args],
        stdin=kw.pop("stdin", subprocess.DEVNULL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=kw.pop("cwd", REPO),
        **kw,
    )


def kill(proc: subprocess.Popen[bytes]) -> None:
    """Make sure a subprocess is gone (for a `finally`)."""
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
        proc.communicate(timeout=10)


def count_lines(path: Path) -> int:
    """Complete lines in a file (0 when it does not exist yet)."""
    try:
        with path.open("rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 16), b""))
    except FileNotFoundError:
        return 0
