"""The DevServer client: one aiohttp session, `act(op, ...)` and `show()`, every answer parsed into a `Reply`.

`act` sends one operation of `bulkops.operations` (its method and path template); `stop()` is
`act(STOP, ...)`.

This is the one boundary where aiohttp meets bulkops: transport errors become `Reply(http_status=None,
error_code=bulkops.timeout|bulkops.connection_error)` here and nowhere else, so the retry logic above never
sees an aiohttp exception. The client never raises for an HTTP status; it reports what happened.

Decisions:
* Requests are signed afresh on every attempt (a retry gets a new `X-Sdk-Date`).
* The URL is built only from a project id and an instance id that pass the API's patterns
  (`request_path`); anything else raises `ValueError` before a byte is sent.
* Redirects are never followed: a 3xx is reported as it is, so credentials never travel to another host.
* Credentials that hold a control character (a stray CR or newline from a CRLF file) are refused up
  front (`check_credentials`, a ConfigError naming the variable, never the value): aiohttp would refuse
  the header anyway, but as an exception in the middle of the run.
* TLS is verified by default; plain `http://` is allowed for loopback endpoints (the simulator) and, with
  `insecure=True`, elsewhere (`check_endpoint`).
* The attempt's timeout covers everything from connecting to the last byte of the answer. It is kept by
  `deadlines.Deadlines` (one sweeping timer for all requests in flight, not aiohttp's timer per request);
  a request that outlives it becomes `bulkops.timeout`.
* The connector is sized to the run's concurrency, so the pool never queues requests behind its own limit.
* aiohttp's hidden re-send of idempotent requests on a dropped keep-alive connection is turned off: every
  attempt is counted, classified and backed off by the engine.
* An answer is read to its end (pieces, chunks) up to `_MAX_BODY`. Once its head has arrived, its status
  decides even if the body then breaks off or times out (a 2xx is final). An answer that cannot be parsed
  at all (`ClientResponseError`: an over-long header) is `bulkops.bad_response`, which is final: the
  request went out whole and the server may have acted.
* Every credential the client holds, and the request's own credential headers, are cut out of what the
  server said (`redact.Redactor`) before the reply leaves this module: a server may echo them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from yarl import URL

from bulkops.cloud.auth import Credentials, auth_headers, signer_for
from bulkops.cloud.deadlines import Deadlines
from bulkops.cloud.listing import to_page
from bulkops.cloud.preflight import FD_RESERVE, check_credentials, check_open_files
from bulkops.cloud.preflight import check_endpoint as _preflight_endpoint
from bulkops.errors import ConfigError
from bulkops.models import BAD_RESPONSE, CONNECTION_ERROR, TIMEOUT, TLS_ERROR, Reply
from bulkops.operations import STOP, Operation
from bulkops.redact import Redactor, request_forms
from bulkops.validation import is_valid_instance_id, is_valid_project_id

__all__ = [
    "FD_RESERVE",
    "USER_AGENT",
    "DevServerClient",
    "check_credentials",
    "check_endpoint",
    "check_open_files",
    "operation_path",
    "request_path",
]

USER_AGENT = "bulkops/0.1"
_MAX_BODY = 1 << 20
_MSG_CHARS = 500  # of an error message, in a Reply
_MSG_KEPT = 4 * _MSG_CHARS  # read from the answer: credentials are cut out before the message is cut
Query = tuple[tuple[str, str], ...]


def _check_ids(project_id: str, instance_id: str) -> None:
    if not is_valid_project_id(project_id):
        raise ValueError("project id does not match the allowed pattern")
    if not is_valid_instance_id(instance_id):
        raise ValueError("instance id does not match the API's pattern")


def request_path(project_id: str, instance_id: str, action: str = "") -> str:
    """`/v1/{project_id}/dev-servers/{id}[/action]`, refusing any part that is not a valid id."""
    _check_ids(project_id, instance_id)
    path = f"/v1/{project_id}/dev-servers/{instance_id}"
    return f"{path}/{action}" if action else path


def operation_path(op: Operation, project_id: str, instance_id: str) -> str:
    """`op`'s path template filled in for one instance (`/v1/{project_id}/dev-servers/{id}/start`),
    refusing any part that is not a valid id."""
    _check_ids(project_id, instance_id)
    return op.path.format(project_id=project_id, id=instance_id)


def check_endpoint(endpoint: str, *, insecure: bool = False) -> tuple[URL, bool]:
    """`preflight.check_endpoint`'s rules; returns (URL, whether plain HTTP to a non-loopback host was
    allowed)."""
    _, plain_remote = _preflight_endpoint(endpoint, insecure=insecure)
    try:
        url = URL(endpoint)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--endpoint is not a URL: {endpoint!r}") from exc
    return url, plain_remote


_raw_decode = json.JSONDecoder().raw_decode


def _load_json(body: bytes) -> Any:
    """Exactly `json.loads(body)` (the same value, or ValueError), in half the time for a plain answer.

    `json.loads` on bytes sniffs the encoding in Python and matches whitespace with a regex at both ends:
    2-3 us of its 5 on a DevServer answer. Answers are UTF-8 (RFC 8259) and unpadded; anything else
    (padding, a BOM-less UTF-16 body, not JSON at all) is handed to `json.loads` itself.
    """
    try:
        text = body.decode("utf-8-sig")
        data, end = _raw_decode(text)
    except ValueError:  # not UTF-8 (UnicodeDecodeError), or not a JSON value at the very start
        return json.loads(body)
    if end == len(text) or not text[end:].strip(" \t\n\r"):
        return data
    return json.loads(body)  # something after the value: another encoding, or extra data (raises)


def _parse(status: int, body: bytes, request_id: str | None, retry_after: str | None) -> Reply:
    retry = None
    if retry_after:
        try:
            retry = max(0.0, float(retry_after))
        except ValueError:
            retry = None
    data: Any = None
    if body:
        try:
            data = _load_json(body)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the interpreter allows
            data = None
    if not isinstance(data, dict):
        if status == 200:
            return Reply(200, request_id=request_id, retry_after=retry)
        return Reply(
            status,
            error_code=BAD_RESPONSE if status < 500 else None,
            error_msg=f"HTTP {status} with a body that is not a JSON object",
            request_id=request_id,
            retry_after=retry,
        )
    code = data.get("error_code")
    msg = data.get("error_msg")
    st = data.get("status")
    return Reply(
        status,
        status=st if isinstance(st, str) else None,
        error_code=code if isinstance(code, str) else None,
        error_msg=msg[:_MSG_KEPT] if isinstance(msg, str) else None,
        request_id=request_id,
        retry_after=retry,
    )


class DevServerClient:
    """Stop, start, reboot and show DevServer instances through one aiohttp session.

    Use as an async context manager (it owns its session) or pass a session of your own.
    """

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials | None,
        *,
        timeout: float = 30.0,
        concurrency: int = 64,
        insecure: bool = False,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        url, _ = check_endpoint(endpoint, insecure=insecure)
        check_credentials(credentials)
        self._base = str(url).rstrip("/")
        self._prefix = (url.path or "").rstrip("/")
        host = url.host or ""
        self._host = host if url.explicit_port is None else f"{host}:{url.explicit_port}"
        self._credentials = credentials
        self._signer = signer_for(credentials)
        # Every credential is cut out of what the server says (it may echo the request back).
        self._secrets = Redactor(credentials.secrets()) if credentials is not None else None
        # The attempt's timeout is kept by `Deadlines` (one sweeping timer for all requests in flight);
        # aiohttp's own would arm a timer per request.
        self._deadlines = Deadlines(timeout)
        self._concurrency = concurrency
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._concurrency, limit_per_host=self._concurrency, ttl_dns_cache=300
            )
            # No session-wide headers (they are merged into every request's, a copy per request: the
            # User-Agent goes in with the signed headers instead) and no cookie jar (the API is
            # stateless; a cookie carried from one answer to the next request has no business there).
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
            # aiohttp silently re-sends an idempotent request (PUT included) once when a reused keep-alive
            # connection drops. That would be a hidden second attempt, uncounted and unlogged: every
            # attempt must be ours to count, classify and back off. aiohttp's own test client turns it
            # off the same way.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session if this client made it."""
        self._deadlines.close()
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def act(self, op: Operation, project_id: str, instance_id: str) -> Reply:
        """`op` once (`PUT .../dev-servers/{id}/start`, ...); never raises for HTTP or transport failures."""
        return await self._call(op.method, operation_path(op, project_id, instance_id), project_id)

    async def stop(self, project_id: str, instance_id: str) -> Reply:
        """`PUT .../dev-servers/{id}/stop` once; never raises for HTTP or transport failures."""
        return await self.act(STOP, project_id, instance_id)

    async def show(self, project_id: str, instance_id: str) -> Reply:
        """`GET .../dev-servers/{id}` once; never raises for HTTP or transport failures."""
        return await self._call("GET", request_path(project_id, instance_id), project_id)

    async def list_page(self, project_id: str, query: tuple[tuple[str, str], ...]) -> Reply:
        """`GET /v1/{project_id}/dev-servers?QUERY` once (`cloud.listing.list_query` makes QUERY): a
        `listing.Page` for a 200 page, else a `Reply`; never raises for HTTP or transport failures."""
        if not is_valid_project_id(project_id):
            raise ValueError("project id does not match the allowed pattern")
        return await self._call("GET", f"/v1/{project_id}/dev-servers", project_id, query)

    def _headers(self, method: str, path: str, project_id: str, query: Query = ()) -> dict[str, str]:
        if self._credentials is None:
            return {"Host": self._host, "X-Project-Id": project_id}
        return auth_headers(
            self._credentials,
            self._signer,
            method=method,
            host=self._host,
            path=path,
            query=query,
            project_id=project_id,
        )

    async def _call(self, method: str, path: str, project_id: str, query: Query = ()) -> Reply:
        """One request; with a query (a listing), a 200 comes back as a `listing.Page`."""
        session = self._session
        if session is None:
            raise RuntimeError("DevServerClient used outside 'async with'")
        full_path = self._prefix + path
        headers = self._headers(method, full_path, project_id, query)
        headers["User-Agent"] = USER_AGENT
        if query:
            path += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
        url = URL(self._base + path, encoded=True)
        deadlines = self._deadlines
        attempt = deadlines.arm()
        status = 0  # the answer's status once its head has arrived: a 2xx is final from then on
        try:
            async with session.request(method, url, headers=headers, allow_redirects=False) as resp:
                status = resp.status
                content = resp.content
                body = await content.read(_MAX_BODY)  # what has arrived: usually the whole answer
                if body and not content.at_eof():
                    body = await _read_rest(content, body)
                reply = _parse(
                    status, body, resp.headers.get("X-Request-Id"), resp.headers.get("Retry-After")
                )
                if query:
                    reply = to_page(reply, body)
            if self._secrets is not None:
                return self._scrub(reply, headers)
            msg = reply.error_msg
            if msg is not None and len(msg) > _MSG_CHARS:
                return dataclasses.replace(reply, error_msg=msg[:_MSG_CHARS])
            return reply
        except asyncio.CancelledError:
            if deadlines.release(attempt):  # the deadline's cancellation, and nobody else's
                return _cut_off(status, "timed out") if status else _timed_out()
            raise
        except TimeoutError:  # a session of the caller's own, with aiohttp's timeouts
            return _cut_off(status, "timed out") if status else _timed_out()
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            # A certificate that does not verify will not verify on the next attempt either.
            return Reply(None, error_code=TLS_ERROR, error_msg=f"TLS failed: {type(exc).__name__}")
        except aiohttp.ClientResponseError as exc:
            # The request was sent whole and the answer could not be parsed (an over-long header, a
            # malformed status line): the server may have acted, so this is final, never re-sent.
            reply = Reply(None, error_code=BAD_RESPONSE, error_msg=f"unreadable answer: {_describe(exc)}")
            return self._scrub(reply, headers) if self._secrets is not None else reply  # it quotes the answer
        except aiohttp.ClientError as exc:
            if status:  # the head arrived, the body broke off: the status still says what happened
                return _cut_off(status, type(exc).__name__)
            reply = Reply(None, error_code=CONNECTION_ERROR, error_msg=_describe(exc))
            return self._scrub(reply, headers) if self._secrets is not None else reply
        finally:
            deadlines.release(attempt)

    def _scrub(self, reply: Reply, headers: dict[str, str]) -> Reply:
        """`reply` with every credential the request carried cut out of the text the server chose."""
        secrets = self._secrets
        assert secrets is not None
        if reply.error_msg is None and reply.error_code is None:  # the common 200: two short fields
            status, request_id = reply.status, reply.request_id
            if not (status and secrets.found(status)) and not (request_id and secrets.found(request_id)):
                return reply
        redact, sent = secrets.redact, request_forms(headers)
        msg = redact(reply.error_msg, sent)
        return Reply(
            reply.http_status,
            status=redact(reply.status, sent),
            error_code=redact(reply.error_code, sent),
            error_msg=msg[:_MSG_CHARS] if msg else msg,
            request_id=redact(reply.request_id, sent),
            retry_after=reply.retry_after,
        )


def _timed_out() -> Reply:
    return Reply(None, error_code=TIMEOUT, error_msg="no answer within the attempt's timeout")


async def _read_rest(content: aiohttp.StreamReader, first: bytes) -> bytes:
    """The rest of an answer that arrives in pieces (TCP writes, chunks), up to `_MAX_BODY` in all."""
    parts = [first]
    size = len(first)
    while size < _MAX_BODY:
        piece = await content.read(_MAX_BODY - size)
        if not piece:
            break
        parts.append(piece)
        size += len(piece)
    return b"".join(parts)


def _cut_off(status: int, why: str) -> Reply:
    """An answer whose head arrived but whose body did not: its status decides (a 2xx is final)."""
    return Reply(
        status,
        error_code=BAD_RESPONSE if 300 <= status < 500 and status != 429 else None,
        error_msg=f"HTTP {status}, then the answer's body broke off ({why})",
    )


def _describe(exc: aiohttp.ClientError) -> str:
    """A one-line, secret-free description of a transport error (no headers, no URL query)."""
    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{name}: cannot connect to {exc.host}:{exc.port}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{name}: server closed the connection without an answer"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{name}: {text}"[:200]
