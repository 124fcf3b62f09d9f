"""A benchmark-only HTTP/1.1 responder: as fast as one core allows, so that the CLIENT is what is measured.

Why it exists. The simulator (aiohttp.web, authentication, state machine) serves about 5,000-7,000
requests/s on one core, while a minimal aiohttp client loop sends about 14,500/s. Measured against the
simulator, every CPU-bound client would be held to the server's speed and every ratio would read 1.0. This
responder is an `asyncio.Protocol` on uvloop (when installed) that parses only what it must (the end of
the headers and Content-Length) and writes one pre-rendered answer, a real `STOPPING` instance body from
the simulator's catalogue, with a fresh `X-Request-Id`. It does not verify signatures: the clients still
sign every request (that cost is theirs), nobody checks it. It serves tens of thousands of requests/s on
one core, several times what any client here sends.

    python -m benchmarks.fastserver [--latency SECONDS]   # prints "fastserver listening on http://127.0.0.1:PORT"

With `--latency`, each answer is written that many seconds after its request arrived (a timer, no
task). Binds 127.0.0.1 only; stops on SIGTERM/SIGINT or after `--max-seconds` (default 1 hour).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
from typing import cast

from bulkops.simulator import answers

_BODY = answers.instance_body("3fa85f64-5717-4562-b3fc-2c963f66afa6", "STOPPING", 1_772_366_400_000)
_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_BODY)).encode()
    + b"\r\nX-Request-Id: "
)
_MAX_BUFFER = 1 << 20


class _Responder(asyncio.Protocol):
    """One connection: split requests at the blank line (plus Content-Length), answer each in order."""

    def __init__(self, server: FastServer) -> None:
        self._server = server
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            length = 0
            at = head.lower().find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)].strip() or b"0")
            total = end + 4 + length
            if len(buffer) < total:
                break
            buffer = buffer[total:]
            self._server.answer(self)
        if len(buffer) > _MAX_BUFFER:
            if self._transport is not None:
                self._transport.close()
            buffer = b""
        self._buffer = buffer

    def write(self, payload: bytes) -> None:
        if self._transport is not None:
            self._transport.write(payload)


class FastServer:
    """Counts requests and answers them, at once or after `latency` seconds."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests = 0
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    def answer(self, conn: _Responder) -> None:
        self.requests += 1
        payload = b"%s%016x\r\n\r\n%s" % (_HEAD, next(self._ids), _BODY)
        if self.latency > 0 and self._loop is not None:
            self._loop.call_later(self.latency, conn.write, payload)
        else:
            conn.write(payload)

    async def serve(self, port: int, max_seconds: float) -> None:
        loop = self._loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Responder(self), "127.0.0.1", port, backlog=1024)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        sock_port = server.sockets[0].getsockname()[1]
        print(f"fastserver listening on http://127.0.0.1:{sock_port}", flush=True)
        async with server:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max_seconds)
        print(f"fastserver answered {self.requests} requests", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fastserver")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    server = FastServer(args.latency)
    try:
        import uvloop
    except ImportError:
        asyncio.run(server.serve(args.port, args.max_seconds))
    else:
        uvloop.run(server.serve(args.port, args.max_seconds))


if __name__ == "__main__":
    main()
