"""Cutting credentials out of text that a server chose: what `api` does to every answer before it is used.

A server (a proxy, a gateway in debug mode, a hostile one) may echo the request back in its error message:
the `X-Auth-Token`, the `X-Security-Token`, the whole `Authorization` header. That message would go into
the report and from there to `bulkops report summarize`. The client knows every credential it holds and
every header it sent, so it cuts them out at its boundary, before anything else sees the answer.

    Redactor(credentials.secrets())      compiled once per client: one regex over every form of every secret
    redactor.found(text)                 a cheap check for the common answer (a 200 with two short fields)
    redactor.redact(text, request=...)   every form of the secrets, and of the request's own credential
                                         headers (an Authorization value differs per request), as `***`

The forms are the ones a leak could take: raw, base64 (standard and URL-safe, with and without padding)
and percent-encoded. Longer forms are replaced first, so that a header holding a secret goes as a whole.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

MASK = "***"
#: Request headers whose values are credentials (or carry one): cut out of answers as a whole.
CREDENTIAL_HEADERS = ("Authorization", "X-Auth-Token", "X-Security-Token")


def forms(secret: str) -> set[str]:
    """`secret` as it could come back: raw, base64 (both alphabets, padded or not), percent-encoded."""
    raw = secret.encode("utf-8", "surrogatepass")
    out = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        out.update((text, text.rstrip("=")))
    out.discard("")
    return out


def _pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    every = sorted({form for value in values if value for form in forms(value)}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, every))) if every else None


class Redactor:
    """Replaces every form of the given secrets (and of a request's credential headers) with `***`."""

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[str]) -> None:
        self._pattern = _pattern(secrets)

    def found(self, text: str) -> bool:
        """True when `text` holds a form of one of the secrets."""
        return self._pattern is not None and self._pattern.search(text) is not None

    def redact(self, text: str | None, request: Mapping[str, str] | None = None) -> str | None:
        """`text` with every form of the secrets, and of `request`'s credential headers, cut out."""
        if not text:
            return text
        if request is not None:
            sent = [request[name] for name in CREDENTIAL_HEADERS if request.get(name)]
            sent += [value.rpartition("Signature=")[2] for value in sent if "Signature=" in value]
            for form in sorted({f for value in sent for f in forms(value)}, key=len, reverse=True):
                if form in text:
                    text = text.replace(form, MASK)
        return text if self._pattern is None else self._pattern.sub(MASK, text)
