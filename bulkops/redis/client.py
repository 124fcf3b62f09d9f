"""The one boundary to redis-py: a client from a `--redis` URL, and what counts as Redis trouble.

`redis.asyncio` is imported here, and only when a function here is called, so `import bulkops` (and every
command without `--redis`) never loads it.

    open_client(url, password=None)   a `redis.asyncio.Redis`; a bad URL is `ConfigError`
    redis_errors()                    the exceptions that mean "Redis is not answering" (fallback, not crash)
    reason(exc, url)                  one line about `exc` for a message, without the URL's password

The client answers within `COMMAND_TIMEOUT` or fails; it retries a command once, at once, on a new
connection (a pooled connection dropped by a Redis restart), and never more: a longer outage is the
fallback's business (see `limits`), not a stall inside one acquire.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bulkops.errors import ConfigError
from bulkops.redis.naming import SCHEMES, redact_url, url_password

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: The environment variable that holds the password when the URL has none.
ENV_PASSWORD = "BULKOPS_REDIS_PASSWORD"
#: The environment variable `--redis` reads (for the CLI).
ENV_URL = "BULKOPS_REDIS_URL"
#: Seconds to open a connection, and to wait for an answer.
CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 1.0


def open_client(url: str, *, password: str | None = None, environ: Mapping[str, str] | None = None) -> Redis:
    """A client for `url` (`redis://`, `rediss://` or `unix://`); the password is the URL's, else
    `password`, else `$BULKOPS_REDIS_PASSWORD`. Nothing is sent until the first command."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigError(f"--redis must be a redis://, rediss:// or unix:// URL, got {redact_url(url)!r}")
    try:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError as exc:
        raise ConfigError("--redis needs the redis package: pip install 'bulkops[redis]'") from exc

    env = os.environ if environ is None else environ
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": COMMAND_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "retry": Retry(NoBackoff(), 1),
    }
    given = password or env.get(ENV_PASSWORD)
    if given and url_password(url) is None:
        kwargs["password"] = given
    try:
        client: Redis = redis.asyncio.from_url(url, **kwargs)
    except ValueError as exc:
        raise ConfigError(f"bad --redis URL {redact_url(url)!r}: {reason(exc, url, given)}") from exc
    return client


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean Redis is not answering as it should (every redis-py error, socket errors,
    timeouts). Cancellation is not among them."""
    from redis.exceptions import RedisError

    return (RedisError, OSError, TimeoutError)


def reason(exc: BaseException, url: str, password: str | None = None) -> str:
    """`exc` as one short line, with the URL's password (and `password`) cut out, should it appear."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in (url_password(url), password):
        if secret:
            text = text.replace(secret, "***")
    return text[:200]


async def check_reachable(url: str, *, password: str | None = None) -> None:
    """Ping Redis at `url` once (the pre-flight check of `--redis`): `ConfigError`, one line, if it does
    not answer."""
    client = open_client(url, password=password)
    try:
        await client.ping()
    except redis_errors() as exc:
        given = password or os.environ.get(ENV_PASSWORD)
        raise ConfigError(f"Redis at {redact_url(url)} is unreachable: {reason(exc, url, given)}") from exc
    finally:
        await client.aclose()
