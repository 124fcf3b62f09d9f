"""A real `redis-server` for tests: Debian's binary on a free loopback port, no persistence, a temp cwd.

    server = RedisServer(tmp_path); server.start(); server.url; server.stop(); server.start()  # same port
    RedisServer(tmp_path, appendonly=True)  # persistence: an AOF in tmp_path, fsynced before each answer

The `redis_server` fixture (tests/conftest.py) yields a started one and stops it. When the binary is
missing the test is skipped locally, and fails when `CI` is set: the issue wants the Redis tests run in CI
(`.ci/run` installs `redis-server`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

BINARY = os.environ.get("BULKOPS_REDIS_SERVER", "/usr/bin/redis-server")


def find_binary() -> str:
    """The redis-server to run; skip (locally) or fail (CI) when there is none."""
    found = BINARY if os.access(BINARY, os.X_OK) else shutil.which("redis-server")
    if found is None:
        message = f"redis-server not found ({BINARY}); install it: apt-get install redis-server"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: Redis tests must not be skipped)")
        pytest.skip(message)
    return found


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process, which can be stopped and started again on the same port."""

    def __init__(self, workdir: Path, *, password: str | None = None, appendonly: bool = False) -> None:
        self.binary = find_binary()
        self.appendonly = appendonly
        self.workdir = workdir
        self.port = free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL a client uses (with the password, when the server has one)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.workdir),
        ]
        # appendfsync always: a write is on disk before it is answered, so a SIGKILL (stop) loses nothing
        args += (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        )
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            args, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if self._answers():
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("redis-server did not answer within 10 s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                sock.sendall(auth + b"PING\r\n")
                data = b""
                while b"PONG" not in data and b"-" not in data:
                    chunk = sock.recv(100)
                    if not chunk:
                        return False
                    data += chunk
                return b"PONG" in data
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server (as a crash would: SIGKILL) and wait for it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
