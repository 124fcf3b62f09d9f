"""Names in Redis, and the Redis URL as it may be shown: nothing here talks to Redis.

    redact_url(url)                  the URL with its password (userinfo or `?password=`) replaced by `***`
    credential_name(credentials)     HMAC-SHA256(CREDENTIAL_KEY, AK or IAM token), 32 hex digits
    endpoint_name(endpoint)          SHA-256 of the normalised endpoint, 16 hex digits
    Keys(endpoint, credentials)      every key of one (endpoint, credential) scope

Key layout (every key under `bulkops:{rl}:`; `{rl}` is a Redis Cluster hash tag, so every key of every
scope lives in one slot and a script may touch any of them; every key has a TTL, refreshed on use):

    bulkops:{rl}:scopes                      zset  scope prefix -> last use (Redis time): `bulkops limits`
    <scope> = bulkops:{rl}:<endpoint>:<credential>
    <scope>:meta                             hash  endpoint (the URL, for display)
    <scope>:runners                          zset  runner id -> last heartbeat or acquire (Redis time)
    <scope>:projects                         zset  project id -> last use (Redis time)
    <scope>:g                                hash  the credential-wide (global) bucket's state
    <scope>:g:cfg                            zset  runner id -> the --global-rate it was configured with
    <scope>:p:<project>                      hash  the project's bucket state (tat, iv, cap, hold, learned,
                                                   cut_at, t429, t429_since)
    <scope>:p:<project>:cfg                  zset  runner id -> the rate it was configured with

The credential is named by a keyed hash, never stored: the key is fixed and public (`CREDENTIAL_KEY`), so
the name is stable across runners and hosts; an AK or an IAM token has far too much entropy for the name
to be reversed by guessing. An IAM token rotates (24 h): runners on different tokens of one user share
nothing, which errs on the side of the local behaviour.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bulkops.cloud.auth import Credentials

#: Every key bulkops writes to Redis starts with this (`{rl}` is the Redis Cluster hash tag).
PREFIX = "bulkops:{rl}:"
#: The fixed key of the HMAC that names a credential (public on purpose: every runner must agree).
CREDENTIAL_KEY = b"bulkops/shared-limits/v1"
#: The index of every scope in use, for `bulkops limits`.
SCOPES_KEY = PREFIX + "scopes"
#: The URL schemes `--redis` accepts.
SCHEMES = ("redis", "rediss", "unix")
MASK = "***"


def redact_url(url: str) -> str:
    """`url` fit for a log line or an error: a password in the userinfo or the query becomes `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    netloc = parts.netloc
    if "@" in netloc:
        # `user:password@host`: the user stays. `word@host` (no colon) is a user name to the URL grammar,
        # but may well be a password written in the wrong place: masked too.
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower() == "password" else v) for k, v in pairs], safe="*/")
    # Not urlunsplit: it writes `unix:///path` as `unix:/path`.
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    return shown + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def url_password(url: str) -> str | None:
    """The password `url` carries (userinfo or `?password=`), for redacting error texts; None if none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.password:
        return parts.password
    for key, value in parse_qsl(parts.query):
        if key.lower() == "password" and value:
            return value
    return None


def credential_name(credentials: Credentials | None) -> str:
    """The credential's name in Redis: HMAC-SHA256 with `CREDENTIAL_KEY` of its AK (or its IAM token);
    None (a simulator without auth) is named as the empty secret."""
    secret = (credentials.ak or credentials.auth_token or "") if credentials is not None else ""
    return hmac.new(CREDENTIAL_KEY, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


def normal_endpoint(endpoint: str) -> str:
    """The endpoint as every runner writes it: scheme and host lower-cased, no trailing slash."""
    parts = urlsplit(endpoint.strip())
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


def endpoint_name(endpoint: str) -> str:
    """The endpoint's name in Redis: 16 hex digits of the SHA-256 of its normal form."""
    return hashlib.sha256(normal_endpoint(endpoint).encode()).hexdigest()[:16]


class Keys:
    """The keys of one (endpoint, credential) scope (see the module docstring)."""

    __slots__ = ("credential", "endpoint", "meta", "projects", "runners", "scope")

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.meta = f"{scope}:meta"
        self.runners = f"{scope}:runners"
        self.projects = f"{scope}:projects"
        self.credential = scope.rsplit(":", 1)[-1]
        self.endpoint = scope.rsplit(":", 2)[-2]

    @classmethod
    def of(cls, endpoint: str, credentials: Credentials | None) -> Keys:
        """The scope of `credentials` on `endpoint`."""
        return cls(f"{PREFIX}{endpoint_name(endpoint)}:{credential_name(credentials)}")

    def project(self, project_id: str) -> str:
        """The hash of a project's bucket ("*" names the global bucket)."""
        return f"{self.scope}:g" if project_id == "*" else f"{self.scope}:p:{project_id}"

    def configured(self, project_id: str) -> str:
        """The zset of the rates runners were configured with for a project ("*": the global bucket)."""
        return self.project(project_id) + ":cfg"
