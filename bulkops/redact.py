"""Cutting credentials out of text that a server chose: what `api` does to every answer before it is used.

A server (a proxy, a gateway in debug mode, a hostile one) may echo the request back in its error message:
the `X-Auth-Token`, the `X-Security-Token`, the whole `Authorization` header. That message would go into
the report and from there to `bulkops report summarize`. The client knows every credential it holds and
every header it sent, so it cuts them out at its boundary, before anything else sees the answer.

    Redactor(credentials.secrets())      compiled once per client: one regex over every form of every secret
    redactor.found(text)                 a cheap check for the common answer (a 200 with two short fields)
    redactor.redact(text, request_forms(headers))
                                         every form of the secrets, and of the request's own Authorization
                                         (it differs per request), replaced by `***`

The forms are the ones a leak could take: raw, base64 (standard and URL-safe, with and without padding)
and percent-encoded. Longer forms are replaced first, so that a header holding a secret goes as a whole.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote, quote_plus

MASK = "***"
#: Request headers whose values are credentials (or carry one): cut out of answers as a whole.
CREDENTIAL_HEADERS = ("Authorization", "X-Auth-Token", "X-Security-Token")


def forms(secret: str) -> set[str]:
    """`secret` as it could come back: raw, base64 (both alphabets), percent-encoded.

    Base64 forms are given without their `=` padding: the unpadded text is contained in the padded one,
    so finding (and replacing) it covers both.
    """
    raw = secret.encode("utf-8", "surrogatepass")
    out = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        out.add(encoded.decode("ascii").rstrip("="))
    out.discard("")
    return out


def request_forms(request: Mapping[str, str]) -> list[str]:
    """The forms of this request's `Authorization` (it differs per request) not already covered.

    Its access key is a credential (in the compiled pattern); its signature is hex, which percent-encoding
    leaves alone, so the raw value, the raw signature and the value's base64 forms are enough.
    """
    value = request.get("Authorization")
    if not value:
        return []
    raw = value.encode("utf-8", "surrogatepass")
    out = [value, value.rpartition("Signature=")[2] if "Signature=" in value else ""]
    out += [
        base64.b64encode(raw).decode("ascii").rstrip("="),
        base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
    ]
    return sorted((f for f in out if f), key=len, reverse=True)


class Redactor:
    """Replaces every form of the given secrets (and of a request's credential headers) with `***`."""

    __slots__ = ("_pattern", "_shortest")

    def __init__(self, secrets: Iterable[str]) -> None:
        every = sorted({form for value in secrets if value for form in forms(value)}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, every))) if every else None
        self._shortest = len(every[-1]) if every else 0

    def found(self, text: str) -> bool:
        """True when `text` holds a form of one of the secrets (a text shorter than all cannot)."""
        if self._pattern is None or len(text) < self._shortest:
            return False
        return self._pattern.search(text) is not None

    def redact(self, text: str | None, request: Sequence[str] = ()) -> str | None:
        """`text` with every form of the secrets, and the `request_forms` of the request, cut out."""
        if not text:
            return text
        for form in request:
            if form in text:
                text = text.replace(form, MASK)
        pattern = self._pattern
        if pattern is not None and pattern.search(text) is not None:
            text = pattern.sub(MASK, text)
        return text
