"""Gateway authentication: SDK-HMAC-SHA256 signatures checked with bulkops.cloud.auth, or IAM tokens.

The signature is recomputed over exactly what the client claims to have signed: the headers named in
`SignedHeaders` with the values received (the real `Host` included), the method, the path as received
(`canonical_uri` decodes and re-encodes it), the decoded query pairs and the body. Beyond a matching
signature, the gateway's rules are enforced:

* `host` and `x-sdk-date` must be among the signed headers, and `X-Sdk-Date` within `max_clock_skew`
  seconds of the server's wall clock (default 15 minutes);
* an AK configured with a security token must send it as `X-Security-Token`, and sign it;
* an `X-Auth-Token` is accepted when it is one of the configured tokens.

A failure is a fixed, short reason for the 401 message: nothing from the request (let alone a secret) is
echoed. The outcome carries a credential key (`ak:<AK>` or `token:<n>`) for per-credential throttling.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping

from bulkops.cloud.auth import DATE_FORMAT, Signer, parse_authorization
from bulkops.simulator.config import AccessKey, SimulatorConfig

NO_CREDENTIALS = "no Authorization or X-Auth-Token header"
MALFORMED = "malformed Authorization header"
UNKNOWN_AK = "access key not found"
NO_DATE = "x-sdk-date header missing or invalid"
SKEW = "x-sdk-date outside the allowed clock skew"
UNSIGNED = "host and x-sdk-date must be signed"
SECURITY_TOKEN = "security token missing, unsigned or invalid"
MISSING_HEADER = "a signed header is missing"
BAD_SIGNATURE = "verify aksk signature fail"
BAD_TOKEN = "token verification failed"


class Verifier:
    """Checks one request's credentials; returns (credential key, None) or (None, reason)."""

    __slots__ = ("_date_cache", "_keys", "_skew", "_tokens", "_wall")

    def __init__(self, config: SimulatorConfig, wall_clock: Callable[[], float]) -> None:
        self._keys: dict[str, tuple[AccessKey, Signer]] = {
            key.ak: (key, Signer(key.ak, key.sk)) for key in config.access_keys
        }
        self._tokens = {token: f"token:{n}" for n, token in enumerate(sorted(config.auth_tokens))}
        self._skew = config.max_clock_skew
        self._wall = wall_clock
        self._date_cache: tuple[str, float | None] = ("", None)

    def _parse_date(self, text: str) -> float | None:
        cached_text, cached = self._date_cache
        if text == cached_text:
            return cached
        try:
            value: float | None = float(calendar.timegm(time.strptime(text, DATE_FORMAT)))
        except ValueError:
            value = None
        self._date_cache = (text, value)
        return value

    def verify(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[str | None, str | None]:
        """Verify a request: `headers` is case-insensitive (aiohttp's), `path` is without the query."""
        authorization = headers.get("Authorization")
        if authorization is None:
            token = headers.get("X-Auth-Token")
            if token is None:
                return None, NO_CREDENTIALS
            key = self._tokens.get(token)
            return (key, None) if key is not None else (None, BAD_TOKEN)
        parsed = parse_authorization(authorization)
        if parsed is None:
            return None, MALFORMED
        ak, names, claimed = parsed
        entry = self._keys.get(ak)
        if entry is None:
            return None, UNKNOWN_AK
        access_key, signer = entry
        date_text = headers.get("X-Sdk-Date")
        when = self._parse_date(date_text) if date_text else None
        if when is None:
            return None, NO_DATE
        if abs(self._wall() - when) > self._skew:
            return None, SKEW
        if "host" not in names or "x-sdk-date" not in names:
            return None, UNSIGNED
        if access_key.security_token is not None:
            sent = headers.get("X-Security-Token")
            if (
                sent is None
                or "x-security-token" not in names
                or not hmac.compare_digest(
                    sent.encode("utf-8", "replace"), access_key.security_token.encode()
                )
            ):
                return None, SECURITY_TOKEN
        signed: dict[str, str] = {}
        for name in names:
            value = headers.get(name)
            if value is None:
                return None, MISSING_HEADER
            signed[name] = value
        signed_names, expected = signer.signature(method, path, query, signed, body)
        if signed_names != ";".join(names) or not hmac.compare_digest(
            expected.encode(), claimed.encode("utf-8", "replace")
        ):
            return None, BAD_SIGNATURE
        return f"ak:{ak}", None


def credential_key(headers: Mapping[str, str]) -> str:
    """Who is calling, unverified (for throttling per credential when authentication is off)."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        parsed = parse_authorization(authorization)
        if parsed is not None:
            return f"ak:{parsed[0]}"
    token = headers.get("X-Auth-Token")
    if token is None:
        return "anonymous"
    return "token:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:16]
