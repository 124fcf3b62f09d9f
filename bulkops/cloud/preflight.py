"""The checks a run passes before anything is sent, cheap enough for `--dry-run` (no aiohttp import).

    check_credentials(credentials)        no control character in a credential (names the variable)
    check_open_files(concurrency)         `--concurrency` fits under `ulimit -n` (raises the soft limit)
    check_endpoint(endpoint, insecure=)   an http(s) URL with a host; plain http only to loopback
    credential_kind(credentials)          what the plan shows: the kind and its variables, never a value

`bulkops stop` and `bulkops stop --dry-run` run the same checks in the same order, so that a dry run
fails (one line, exit 2) wherever the real run would. `bulkops.cloud.api` re-exports them for the client.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from bulkops.cloud.auth import ENV_AK, ENV_AUTH_TOKEN, ENV_SECURITY_TOKEN, ENV_SK, Credentials
from bulkops.errors import ConfigError

_CREDENTIAL_FIELDS = (
    ("ak", ENV_AK),
    ("sk", ENV_SK),
    ("security_token", ENV_SECURITY_TOKEN),
    ("auth_token", ENV_AUTH_TOKEN),
)
FD_RESERVE = 64  # descriptors besides connections: std streams, report, overflow, event loop, DNS, input
NO_CREDENTIALS = f"no credentials: set {ENV_AK} and {ENV_SK}, or {ENV_AUTH_TOKEN}"


def check_credentials(credentials: Credentials | None) -> None:
    """Raise ConfigError (naming the variable, never its value) if a credential holds a control character."""
    if credentials is None:
        return
    for attr, env in _CREDENTIAL_FIELDS:
        value: str | None = getattr(credentials, attr)
        if value and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ConfigError(f"{env} holds a control character (a stray newline or carriage return?)")


def credential_kind(credentials: Credentials | None) -> str:
    """The credential as the plan shows it: its kind and where it came from, never its value."""
    if credentials is None:
        return "none (allowed for a loopback endpoint only)"
    if credentials.kind == "token":
        return f"IAM token ({ENV_AUTH_TOKEN})"
    if credentials.kind == "aksk+token":
        return f"AK/SK with a security token ({ENV_AK}, {ENV_SK}, {ENV_SECURITY_TOKEN})"
    return f"AK/SK ({ENV_AK}, {ENV_SK})"


def check_open_files(concurrency: int) -> None:
    """Make sure `concurrency` connections fit under RLIMIT_NOFILE: raise the soft limit up to the hard
    one if need be, else raise ConfigError (one line) before anything is sent.

    Past the limit, connecting fails with "Too many open files" in the middle of the run.
    """
    try:
        import resource
    except ImportError:  # not a POSIX system: no such limit to check
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = concurrency + FD_RESERVE
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard == resource.RLIM_INFINITY or hard >= need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            return
        except (ValueError, OSError):
            pass
    raise ConfigError(
        f"--concurrency {concurrency} needs about {need} open files, but this process may open {soft} "
        f"(hard limit {hard}); lower --concurrency or raise 'ulimit -n'"
    )


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1); a name is never resolved."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, *, insecure: bool = False) -> tuple[str, bool]:
    """Vet a base URL; returns (host, whether plain HTTP to a non-loopback host was allowed).

    Raises ConfigError for anything but an http(s) URL with a host and no query, or for plain HTTP to a
    non-loopback host without `insecure`.
    """
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
        _ = parts.port  # ValueError for a port that is not a number in range
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--endpoint is not a URL: {endpoint!r}") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"--endpoint must be an http(s) URL with a host, got {endpoint!r}")
    if parts.query or parts.fragment or parts.username is not None or parts.password is not None:
        raise ConfigError("--endpoint must not carry a query, fragment or user info")
    plain_remote = parts.scheme == "http" and not is_loopback(host)
    if plain_remote and not insecure:
        raise ConfigError(
            f"refusing plain http:// to {host} (credentials would travel unencrypted); "
            "use https, a loopback address, or --insecure"
        )
    return host, plain_remote
