"""Transport safety: TLS is verified, plain HTTP only to loopback (or with --insecure and a warning), and
redirects are never followed, so credentials never travel to another server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import structlog
from aiohttp import web
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bulkops.cli.main import main
from bulkops.cloud.api import DevServerClient, check_endpoint
from bulkops.cloud.auth import Credentials
from bulkops.engine import stop_instances
from bulkops.errors import ConfigError
from bulkops.models import TLS_ERROR, Outcome, Result, Target
from bulkops.options import Options, RateLimit, RetryPolicy

P = "0123456789abcdef0123456789abcdef"
IDS = [f"62383738-e52a-450a-9f84-{n:012x}" for n in range(6)]
CREDS = Credentials(ak="AKTRANSPORT", sk="sk-transport-secret")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Serve `handler` for every path on 127.0.0.1 (a free port); yields the base URL."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        yield f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Counter:
    """A handler that counts requests (and the headers they carried) and answers like the API."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.status = status
        self.headers = headers or {}

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.headers)))
        body = b'{"status":"STOPPING"}' if self.status == 200 else b""
        return web.Response(
            status=self.status, body=body, headers=self.headers, content_type="application/json"
        )


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def run_rows(endpoint: str, n: int, **kw: object) -> list[Result]:
    """Stop `n` instances of project P through the engine; the results, in line order."""
    options = Options(
        endpoint=endpoint,
        credentials=CREDS,
        rate=RateLimit(100.0),
        concurrency=2,
        timeout=5.0,
        retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
        **kw,  # type: ignore[arg-type]
    )
    targets = [Target(k + 1, P, IDS[k]) for k in range(n)]
    async with stop_instances(targets, options) as run:
        results = [r async for r in run]
    return sorted(results, key=lambda r: r.line)


@pytest.mark.anyio
async def test_self_signed_https_endpoint_is_refused_not_trusted(tmp_path: Path) -> None:
    """TLS is verified by default: a self-signed server gets no request and the row fails at once with a
    TLS error (not retried); the same server is reachable when its certificate is trusted."""
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    handler = Counter()
    async with serve(handler, server_ctx) as url:
        async with DevServerClient(url, CREDS) as client:
            reply = await client.stop(P, IDS[0])
        assert reply.http_status is None and reply.error_code == TLS_ERROR
        assert reply.error_msg is not None and "Certificate" in reply.error_msg
        results = await run_rows(url, 2)
        assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.FAILED]
        assert all(r.error_code == TLS_ERROR and r.http_status is None and r.attempts == 1 for r in results)
        assert handler.requests == []  # nothing (no header, no signature) reached the untrusted server

        trusting = ssl.create_default_context(cafile=str(cert))
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as session,
            DevServerClient(url, CREDS, session=session) as client,
        ):
            ok = await client.stop(P, IDS[0])
        assert ok.http_status == 200 and len(handler.requests) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirect_is_reported_not_followed(status: int) -> None:
    """A 3xx to another server is reported as a failed row with its status; the other server gets nothing,
    so the signed request and its credentials never travel there."""
    elsewhere = Counter()
    async with serve(elsewhere) as other:
        redirector = Counter(status, {"Location": f"{other}/v1/{P}/dev-servers/{IDS[0]}/stop"})
        async with serve(redirector) as url:
            results = await run_rows(url, 3)
    assert elsewhere.requests == []
    assert [r.outcome for r in results] == [Outcome.FAILED] * 3
    assert all(r.http_status == status and r.attempts == 1 for r in results)
    assert len(redirector.requests) == 3  # one attempt per row: a 3xx is final, not retried
    assert all("Authorization" in headers for _, _, headers in redirector.requests)


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:8080",
        "http://127.9.8.7",
        "https://10.1.2.3",
    ],
)
def test_plain_http_to_loopback_or_any_https_is_accepted(endpoint: str) -> None:
    """Loopback over plain HTTP (the simulator) and HTTPS anywhere need no --insecure."""
    _, plain_remote = check_endpoint(endpoint)
    assert plain_remote is False


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://10.1.2.3",
        "http://192.0.2.1:8080",
        "http://127.0.0.1.nip.io",  # a name that resolves to loopback is still a remote name
        "http://localhost.example.com",
        "http://0.0.0.0:8080",
        "http://[::ffff:10.0.0.1]",
        "http://modelarts.cn-north-4.myhuaweicloud.com",
    ],
)
def test_plain_http_elsewhere_needs_insecure(endpoint: str) -> None:
    """Plain HTTP to anything but a loopback address is refused, and allowed (flagged) with --insecure."""
    with pytest.raises(ConfigError, match="refusing plain http://"):
        check_endpoint(endpoint)
    _, plain_remote = check_endpoint(endpoint, insecure=True)
    assert plain_remote is True


def test_cli_insecure_plain_http_warns_and_without_it_refuses(tmp_path: Path) -> None:
    """--insecure with plain http:// to a remote host logs a warning; without it, exit 2 and an error line."""
    inp = tmp_path / "in.csv"
    inp.write_text("project_id,id\nbad project,not-an-id\n")  # nothing valid: nothing is ever sent
    env = {"BULKOPS_AUTH_TOKEN": "tok-transport", "HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": ""}
    base = ["stop", str(inp), "--endpoint", "http://192.0.2.1:8080", "--yes", "--log-format", "json"]
    try:
        refused = CliRunner().invoke(main, [*base, "--report", str(tmp_path / "a.jsonl")], env=env)
        assert refused.exit_code == 2
        assert refused.stderr.startswith("bulkops: error: refusing plain http:// to 192.0.2.1")
        assert not (tmp_path / "a.jsonl").exists()
        allowed = CliRunner().invoke(
            main, [*base, "--insecure", "--report", str(tmp_path / "b.jsonl")], env=env
        )
        assert allowed.exit_code == 1, allowed.stderr  # the one row is invalid
        assert '"event": "bulkops.transport.insecure"' in allowed.stderr
        assert '"level": "warning"' in allowed.stderr
    finally:
        structlog.reset_defaults()
