"""A hostile server: answers in pieces, chunked, with over-long headers, echoing the request's credentials.

`Hostile` is a raw asyncio HTTP/1.1 server on 127.0.0.1, run in a background thread (so a test can drive
the engine, the client or the CLI against it). Each request is answered by a function of the request
with a list of byte pieces, written one TCP write at a time with a pause between them, then the
connection is closed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import anyio
import pytest
import structlog
from _reliability import CLEAN_ENV, REPO, SimThread, cli_env, count_lines, kill, spawn
from click.testing import CliRunner

from bulkops.cli.main import main
from bulkops.cloud.api import DevServerClient
from bulkops.cloud.auth import Credentials
from bulkops.engine import stop_instances
from bulkops.errors import InputError
from bulkops.io.feed import thread_batches
from bulkops.models import BAD_RESPONSE, Outcome, Reply, Result, Target
from bulkops.options import Options, RateLimit, RetryPolicy
from bulkops.redact import CREDENTIAL_HEADERS
from bulkops.simulator import InventorySpec, SimulatorConfig, write_csv

P = "0123456789abcdef0123456789abcdef"
IDS = [f"62383738-e52a-450a-9f84-{n:012x}" for n in range(8)]
CREDS = Credentials(ak="AKHOSTILE", sk="sk-hostile-secret")
PAUSE = 0.05


@dataclass
class Request:
    """One request as the hostile server read it."""

    method: str
    path: str
    headers: dict[str, str]


Answer = Callable[[Request], list[bytes]]


def http(status: int, body: bytes, *, chunked: bool = False, pieces: int = 2, extra: str = "") -> list[bytes]:
    """An answer with a JSON `body`, cut into `pieces` TCP writes (or chunks, with `chunked`)."""
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many"}
    head = f"HTTP/1.1 {status} {reason.get(status, 'X')}\r\nContent-Type: application/json\r\n{extra}"
    step = max(1, -(-len(body) // pieces))
    parts = [body[i : i + step] for i in range(0, len(body), step)]
    if chunked:
        head += "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        return [head.encode()] + [b"%x\r\n%s\r\n" % (len(p), p) for p in parts] + [b"0\r\n\r\n"]
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return [head.encode() + parts[0], *parts[1:]]


class Hostile:
    """`with Hostile(answer) as url:` serves `answer` on 127.0.0.1 from a background thread."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self.url = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            first, *lines = head.decode("latin-1").split("\r\n")
            method, path, _ = first.split(" ", 2)
            headers = dict(line.split(": ", 1) for line in lines if ": " in line)
            request = Request(method, path, headers)
            self.requests.append(request)
            for n, piece in enumerate(self.answer(request)):
                if n:
                    await asyncio.sleep(PAUSE)
                writer.write(piece)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client hung up, or the server is shutting down (its only cancellation)
        finally:
            writer.close()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        async with server:
            await self._stop.wait()

    def __enter__(self) -> str:
        self._thread.start()
        assert self._ready.wait(10.0)
        return self.url

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10.0)


def error(code: str, msg: str) -> bytes:
    """An API error body."""
    return json.dumps({"error_code": code, "error_msg": msg}).encode()


async def run_rows(endpoint: str, n: int, credentials: Credentials | None = CREDS) -> list[Result]:
    """Stop `n` instances of project P through the engine against `endpoint`; results in line order."""
    options = Options(
        endpoint=endpoint,
        credentials=credentials,
        rate=RateLimit(100.0),
        concurrency=2,
        timeout=5.0,
        retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02),
    )
    async with stop_instances([Target(k + 1, P, IDS[k]) for k in range(n)], options) as run:
        results = [r async for r in run]
    return sorted(results, key=lambda r: r.line)


# -- 1. a body read in pieces ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_sent_in_pieces_is_read_whole(chunked: bool) -> None:
    """An answer that arrives in two TCP writes or two chunks is read whole: 6308 is `already_stopped`,
    a chunked 404 keeps its ModelArts.6309 code, a 429 keeps its rate hint."""
    stopping = error("ModelArts.6308", "The instance is stopping.")
    hint = "The throttling threshold has been reached: policy user over ratelimit,limit:10,time:1 second"
    answers = {
        IDS[0]: http(400, stopping, chunked=chunked),
        IDS[1]: http(404, error("ModelArts.6309", "The instance does not exist."), chunked=chunked),
        IDS[2]: http(429, error("APIG.0308", hint), chunked=chunked, pieces=3),
    }
    with Hostile(lambda req: answers[req.path.split("/")[4]]) as url:
        async with DevServerClient(url, CREDS) as client:
            replies = [await client.stop(P, IDS[k]) for k in range(3)]
        results = await run_rows(url, 2)
    assert [r.error_code for r in replies] == ["ModelArts.6308", "ModelArts.6309", "APIG.0308"]
    assert replies[2].error_msg == hint
    assert [(r.outcome, r.error_code) for r in results] == [
        (Outcome.ALREADY_STOPPED, "ModelArts.6308"),
        (Outcome.NOT_FOUND, "ModelArts.6309"),
    ]


# -- 13. secrets echoed back -----------------------------------------------------------------------------

TOKEN = "itHostileEchoIamToken.MIIRbwYJKoZIhvcNAQcC/+="
AK, SK, ST = "AKHOSTILEECHO7Q3ZPX", "skHostileEcho/Secret+Value=9f8e", "stHostileEchoSecurity_5ad41f0e"


def echo_credentials(req: Request) -> list[bytes]:
    """A 401 whose message repeats every credential header of the request: raw, base64, percent-encoded."""
    said = [v for k, v in req.headers.items() if k in CREDENTIAL_HEADERS]
    echoes = [f"{v} b64={base64.b64encode(v.encode()).decode()} pct={quote(v, safe='')}" for v in said]
    if req.path.endswith(IDS[2] + "/stop"):  # quoted back by the HTTP parser's own error message
        return http(200, b"{}", extra=f"X-Echo: {' '.join(said)}{'a' * 9000}\r\n", pieces=1)
    msg = "Incorrect IAM authentication information: " + " | ".join(echoes)
    return http(401, error("APIGW.0301", msg), pieces=1)


@pytest.mark.parametrize(
    "env",
    [
        {"BULKOPS_AUTH_TOKEN": TOKEN},
        {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK, "HUAWEICLOUD_SDK_SECURITY_TOKEN": ST},
    ],
    ids=["iam-token", "aksk-security-token"],
)
def test_credentials_echoed_by_the_server_reach_neither_report_nor_summary(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """A server that echoes X-Auth-Token, X-Security-Token and Authorization in its 401 message: no form
    of any credential (raw, base64, percent-encoded) reaches the report or `bulkops report summarize`."""
    from test_secrets import forms

    inp = tmp_path / "in.csv"
    inp.write_text("project_id,id\n" + "".join(f"{P},{i}\n" for i in IDS[:3]))
    report = tmp_path / "r.jsonl"
    try:
        server = Hostile(echo_credentials)
        with server as url:
            args = ["stop", str(inp), "--endpoint", url, "--yes", "--report", str(report)]
            result = CliRunner().invoke(main, [*args, "--log-level", "debug"], env={**CLEAN_ENV, **env})
            summary = CliRunner().invoke(main, ["report", "summarize", str(report), "--top", "50"])
    finally:
        structlog.reset_defaults()
    assert result.exit_code == 1, result.stderr
    records = sorted((json.loads(line) for line in report.read_text().splitlines()), key=lambda r: r["line"])
    assert [(r["outcome"], r["error_code"]) for r in records] == [("failed", "APIGW.0301")] * 2 + [
        ("failed", BAD_RESPONSE)
    ]
    sent = [v for r in server.requests for k, v in r.headers.items() if k in CREDENTIAL_HEADERS]
    assert len(sent) >= 3  # the server did see (and echo) the credential headers
    secrets = [s for s in (TOKEN, AK, SK, ST) if s in env.values()] + sent
    outputs = {"report": report.read_bytes(), "summary": summary.output.encode(), "log": result.stderr_bytes}
    for secret in secrets:
        for form in forms(secret):
            for where, data in outputs.items():
                assert form not in data, f"a form of a secret is in the {where}"
    assert all("***" in r["error_msg"] for r in records)


# -- 14. a 200 is final ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_answer_the_server_may_have_acted_on_is_never_sent_again() -> None:
    """A 200 whatever its body (a throttling code in it, a body that breaks off) is `accepted`, and an
    answer that cannot be parsed (an over-long header) is `failed` at once: one stop per id, never three."""
    throttled = error("APIG.0308", "The throttling threshold has been reached: limit:10,time:1 second")
    answers = {
        IDS[0]: http(200, throttled),
        IDS[1]: http(200, b'{"status":"STOPPING"}', extra="X-Padding: " + "a" * 20_000 + "\r\n"),
        IDS[2]: [b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{"status":'],
    }
    server = Hostile(lambda req: answers[req.path.split("/")[4]])
    with server as url:
        results = await run_rows(url, 3)
    assert sorted(r.path.split("/")[4] for r in server.requests) == IDS[:3]
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.FAILED, Outcome.ACCEPTED]
    assert [r.attempts for r in results] == [1, 1, 1]
    assert results[1].error_code == BAD_RESPONSE and results[1].http_status is None


# -- 6. streaming input ----------------------------------------------------------------------------------


class Instant:
    """A client double that accepts every stop at once."""

    def __init__(self) -> None:
        self.stops: list[str] = []

    async def stop(self, project_id: str, instance_id: str) -> Reply:
        self.stops.append(instance_id)
        return Reply(200, status="STOPPING")

    async def show(self, project_id: str, instance_id: str) -> Reply:
        return Reply(200, status="STOPPED")


@pytest.mark.anyio
async def test_a_row_is_sent_while_the_input_is_silent_and_stop_does_not_wait_for_it() -> None:
    """A row is sent as soon as it is read, though the input then writes nothing; and stopping the run
    does not wait for that silent input (a blocked read is abandoned)."""
    silence = threading.Event()

    def pipe() -> Iterator[Target]:
        yield Target(1, P, IDS[0])
        silence.wait(8.0)  # a pipe that writes nothing more (bounded, so a failing test ends)
        yield Target(2, P, IDS[1])

    client = Instant()
    options = Options(endpoint="http://127.0.0.1:9", rate=RateLimit(100.0), concurrency=2)
    started = time.monotonic()
    try:
        with anyio.fail_after(20):
            async with stop_instances(pipe(), options, client=client) as run:
                first = await run.__aiter__().__anext__()
                took_first = time.monotonic() - started
                run.wind_down()
                rest = [r async for r in run]
            took_all = time.monotonic() - started
    finally:
        silence.set()
    assert (first.line, first.outcome) == (1, Outcome.ACCEPTED) and rest == []
    assert client.stops == [IDS[0]]
    assert took_first < 3.0 and took_all < 3.0, (took_first, took_all)


def test_sigterm_ends_a_run_whose_stdin_pipe_is_silent(tmp_path: Path) -> None:
    """`tail -f ids | bulkops stop -`: the first row is sent at once, and SIGTERM ends the run (exit 130,
    row 1 in the report) while the pipe is silent, not when it next writes."""
    config = SimulatorConfig(
        seed=3,
        inventory=InventorySpec(projects=1, instances_per_project=2, status_mix={"RUNNING": 1.0}, seed=3),
        auth_enabled=False,
    )
    report = tmp_path / "r.jsonl"
    with SimThread(config) as sim:
        project = sim.inventory.project_ids[0]
        first, second = [i for i, _ in sim.inventory.iter_instances(project)]
        args = ["stop", "-", "--endpoint", sim.url, "--yes", "--report", str(report), "--log-format", "json"]
        proc = spawn(args, cli_env(), stdin=subprocess.PIPE)
        try:
            assert proc.stdin is not None
            proc.stdin.write(f"project_id,id\n{project},{first}\n".encode())
            proc.stdin.flush()
            deadline = time.monotonic() + 15
            while count_lines(report) < 1 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert count_lines(report) == 1, "row 1 was not sent while the pipe stayed open"
            proc.send_signal(signal.SIGTERM)
            sent_at = time.monotonic()
            proc.wait(timeout=15)  # stdin still open and silent (communicate() would close it)
            took = time.monotonic() - sent_at
            _, err = proc.communicate(timeout=5)  # the process is gone: now its pipes may close
        finally:
            kill(proc)
    assert proc.returncode == 130, err.decode(errors="replace")
    assert took < 5, took
    assert b"Traceback" not in err and b"Fatal Python error" not in err
    [record] = [json.loads(line) for line in report.read_text().splitlines()]
    assert (record["id"], record["outcome"]) == (first, "accepted")
    assert second not in report.read_text()


# -- 2. --concurrency above the open-file limit ----------------------------------------------------------


@pytest.mark.parametrize("hard", [256, 4096], ids=["hard-256-refused", "hard-4096-raised"])
def test_concurrency_above_the_open_file_limit_is_raised_or_refused_up_front(
    tmp_path: Path, hard: int
) -> None:
    """`ulimit -n 256` and --concurrency 400: the soft limit is raised when the hard one allows (the run
    succeeds), else one error line, exit 2, nothing sent."""
    config = SimulatorConfig(
        seed=5,
        inventory=InventorySpec(projects=1, instances_per_project=3, status_mix={"RUNNING": 1.0}, seed=5),
        auth_enabled=False,
    )
    csv_path, report = tmp_path / "in.csv", tmp_path / "r.jsonl"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    with SimThread(config) as sim:
        write_csv(sim.inventory, csv_path)
        args = ["stop", str(csv_path), "--endpoint", sim.url, "--yes", "--report", str(report)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "bulkops", *args, "--concurrency", "400", "--log-format", "json"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
            cwd=REPO,
            preexec_fn=limit,  # noqa: PLW1509 - only setrlimit, before exec
        )
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            kill(proc)
        sent = len(sim.request_log)
    text = err.decode(errors="replace")
    if hard == 256:
        assert proc.returncode == 2, text
        assert text.splitlines() == [
            "bulkops: error: --concurrency 400 needs about 464 open files, but this process may open 256 "
            "(hard limit 256); lower --concurrency or raise 'ulimit -n'"
        ]
        assert sent == 0 and not report.exists()
    else:
        assert proc.returncode == 0, text
        assert sent == 3 and "Traceback" not in text


@pytest.mark.anyio
async def test_the_reader_thread_ends_with_its_consumer_and_hands_over_its_errors() -> None:
    """A consumer that stops early ends the reader thread (it does not read on into the input), and an
    error raised while reading reaches the consumer after the rows before it."""

    def endless() -> Iterator[int]:
        n = 0
        while True:
            n += 1
            yield n

    async with aclosing(thread_batches(endless(), size=10, ahead=50)) as batches:
        first = await batches.__anext__()
        [reader] = [t for t in threading.enumerate() if t.name == "bulkops-reader"]
    assert first[0] == 1 and len(first) <= 10
    reader.join(5.0)
    assert not reader.is_alive()

    def failing() -> Iterator[int]:
        yield from range(3)
        raise InputError("cannot read INPUT: I/O error")

    seen: list[int] = []
    with pytest.raises(InputError, match="I/O error"):
        async for batch in thread_batches(failing()):
            seen += batch
    assert seen == [0, 1, 2]
