"""`bulkops simulate`'s flag values parsed into the simulator's config: limits, a limit schedule, per-project
limits, and the credentials to accept, read from the environment (never from arguments, which `ps` shows).
A bad value is click's usage error, with the flag named.
"""

from __future__ import annotations

import socket
import sys
from typing import NoReturn

import click

from bulkops.cloud.auth import ENV_AK, ENV_AUTH_TOKEN, ENV_SECURITY_TOKEN, ENV_SK
from bulkops.simulator.config import AccessKey, Limit

__all__ = ["accepted_credentials", "parse_limit", "parse_project_limits", "parse_schedule"]


def parse_limit(value: str | None) -> Limit | None:
    """`10/s`, `600/min` -> a Limit; empty, `none`, `off` or `0` -> no limit."""
    if value is None or value.strip().lower() in ("", "none", "off", "0"):
        return None
    try:
        return Limit.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def parse_schedule(values: tuple[str, ...]) -> tuple[tuple[float, float], ...]:
    """`--limit-change 20=0.5` -> ((20.0, 0.5),)."""
    out = []
    for value in values:
        at, sep, factor = value.partition("=")
        try:
            out.append((float(at), float(factor)))
        except ValueError:
            raise click.BadParameter(
                f"expected SECONDS=FACTOR, got {value!r}", param_hint="--limit-change"
            ) from None
        if not sep:
            raise click.BadParameter(f"expected SECONDS=FACTOR, got {value!r}", param_hint="--limit-change")
    return tuple(out)


def parse_project_limits(values: tuple[str, ...]) -> dict[str, Limit | None]:
    """`--project-rate-limit abc=5/s` -> {"abc": Limit(5/s)}; `abc=none` -> unlimited."""
    limits: dict[str, Limit | None] = {}
    for item in values:
        project, sep, limit = item.partition("=")
        if not sep or not project.strip():
            raise click.BadParameter(f"expected PROJECT=LIMIT (e.g. abc=5/s), got {item!r}")
        limits[project.strip()] = parse_limit(limit)
    return limits


def _access_keys(env: dict[str, str]) -> tuple[AccessKey, ...]:
    """The AK/SK (and security token) in `env`, both or neither."""
    ak, sk = env.get(ENV_AK), env.get(ENV_SK)
    if not ak and not sk:
        return ()
    if not (ak and sk):
        raise click.UsageError(f"set both {ENV_AK} and {ENV_SK} (or neither)")
    return (AccessKey(ak, sk, env.get(ENV_SECURITY_TOKEN) or None),)


def accepted_credentials(
    env: dict[str, str], *, no_auth: bool, required: bool
) -> tuple[tuple[AccessKey, ...], frozenset[str]]:
    """(access keys, tokens) to accept, from `env`; a usage error when `required` and there are none."""
    if no_auth:
        return (), frozenset()
    keys = _access_keys(env)
    token = env.get(ENV_AUTH_TOKEN)
    tokens = frozenset({token}) if token else frozenset()
    if required and not keys and not tokens:
        raise click.UsageError(
            f"no credentials to accept: set {ENV_AK} and {ENV_SK} (or {ENV_AUTH_TOKEN}), or pass --no-auth"
        )
    return keys, tokens


def check_port(host: str, port: int) -> None:
    """One error line (exit 2) when nothing can listen on host:port, e.g. another simulator holds it."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
            probe.bind(address)
    except OSError as exc:
        cannot_listen(host, port, exc)


def cannot_listen(host: str, port: int, exc: OSError) -> NoReturn:
    """One `bulkops: error:` line and exit 2, as every bulkops command fails (no CLI import here)."""
    reason = (exc.strerror or str(exc)).lower()
    why = f"cannot listen on {host}:{port}: {reason} (another simulator? try --port 0 for a free port)"
    click.echo(f"bulkops: error: {why}", err=True)
    sys.exit(2)
