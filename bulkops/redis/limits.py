"""`SharedLimits`: the limiter whose buckets live in Redis, shared by every runner that names it.

    limits = SharedLimits(url, endpoint=..., credentials=...)
    await limits.connect()                    # ping and register; unreachable -> ConfigError, nothing sent
    tg.start_soon(limits.run)                 # heartbeat every second (and reconnects while Redis is away)
    wait = await limits.acquire(project_id, limit=RateLimit(20, 20), global_limit=None)
    await clock.sleep(wait); send ...
    await limits.learn(project_id, rate=9.8, hold_for=None, shared=False, throttled=True)
    await limits.aclose()                     # leave: the other runners stop counting this one

or `async with limiter.open_shared_limits(url, endpoint=..., credentials=...) as limits:` for all of it.

One round trip per acquire (`ACQUIRE`): a GCRA reservation (see `gcra`) in the project's bucket
and, when one applies, the credential's global bucket, on Redis time, returning the wait. The rate is the
lowest of: this runner's configured rate, the lowest any live runner configured for that bucket (when
lower than ours, `bulkops.redis.rate_disagrees` is logged once per bucket and kept in `disagreements`),
and the rate learned from the gateway (`learn`, by any runner). A hold (`Retry-After`) adds to the wait.

Redis trouble never stops a stop. If Redis stops answering, `acquire` and `learn` do not raise: the
first failure logs `bulkops.redis.unavailable` (once per outage) and the runner paces with local buckets
(`fallback`) at the last shared rate divided by the runners last seen. While Redis is away, an acquire or
a heartbeat tries it again, at most once per `PROBE_MIN`..`PROBE_MAX` seconds (doubling); when it answers,
`bulkops.redis.back` is logged, what was learned meanwhile is published, and sharing resumes. The client's
own timeouts (`client`) bound how long one failing call can take.
"""

from __future__ import annotations

import math
import os
import secrets
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from bulkops.clock import Clock, SystemClock
from bulkops.cloud.auth import Credentials
from bulkops.errors import ConfigError
from bulkops.options import RateLimit
from bulkops.redis.client import ENV_PASSWORD, open_client, reason, redis_errors
from bulkops.redis.fallback import GLOBAL, PACING, Fallback
from bulkops.redis.naming import SCOPES_KEY, Keys, normal_endpoint, redact_url
from bulkops.redis.scripts import ACQUIRE, HEARTBEAT, LEARN
from bulkops.redis.snapshot import SharedProject, read_snapshot

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

log = structlog.get_logger("bulkops.redis")

#: Seconds every key lives after its last write.
KEY_TTL = 300.0
#: Seconds after its last heartbeat (or acquire) at which a runner no longer counts.
RUNNER_TTL = 5.0
#: Seconds between heartbeats (`run`).
HEARTBEAT_EVERY = 1.0
#: Seconds after a learned rate went down during which a higher one is ignored (runners that have not
#: yet seen the 429s must not undo the cut at once).
RAISE_QUIET = 2.0
#: Seconds over which 429s are counted for `bulkops limits`.
RECENT_SPAN = 300.0
#: Least and most seconds between two attempts to reach Redis while it is away.
PROBE_MIN = 0.5
PROBE_MAX = 5.0


class SharedLimits:
    """Token buckets in Redis for one (endpoint, credential), shared by every runner (see the module)."""

    def __init__(
        self,
        url: str,
        *,
        endpoint: str,
        credentials: Credentials | None,
        password: str | None = None,
        clock: Clock | None = None,
        runner_id: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._url = url
        self._password = password or env.get(ENV_PASSWORD) or None
        self.url = redact_url(url)
        """The Redis URL without its password: what messages show."""
        self.keys = Keys.of(endpoint, credentials)
        self._endpoint = normal_endpoint(endpoint)
        self.runner_id = runner_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._clock = clock or SystemClock()
        self._client: Redis | None = None
        self._acquire_script: AsyncScript | None = None
        self._learn_script: AsyncScript | None = None
        self._heartbeat_script: AsyncScript | None = None
        self._errors: tuple[type[BaseException], ...] = ()
        self._up = False
        self._next_probe = -math.inf
        self._probe_delay = PROBE_MIN
        self._fallback = Fallback()
        self._pending: dict[str, float] = {}  # rates learned while Redis was away, published when back
        self._disagreements: dict[str, tuple[float | None, float]] = {}
        self._keys_of: dict[str, list[str]] = {}
        self._ttl_ms = int(KEY_TTL * 1000)

    # -- what it knows ----------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """True while the buckets are shared through Redis, False while the local fallback paces."""
        return self._up

    @property
    def disagreements(self) -> Mapping[str, tuple[float | None, float]]:
        """Buckets whose rate another runner configured lower: key ("*" for the credential's) ->
        (this runner's configured rate or None, the lowest configured rate, which is used)."""
        return self._disagreements

    @property
    def runners(self) -> int:
        """Live runners sharing this endpoint and credential, as last seen (this one included)."""
        return self._fallback.runners

    def rate(self, project_id: str) -> float | None:
        """The rate a project's bucket ("*": the credential's) paced at on the last acquire, None before."""
        return self._fallback.rate(project_id)

    # -- connecting -------------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Reach Redis and register this runner. Unreachable (or refusing): `ConfigError`, one line."""
        client = open_client(self._url, password=self._password)
        self._client = client
        self._acquire_script = client.register_script(ACQUIRE)
        self._learn_script = client.register_script(LEARN)
        self._heartbeat_script = client.register_script(HEARTBEAT)
        # uvloop raises RuntimeError for a write on a transport Redis closed: Redis trouble too (any other
        # RuntimeError is re-raised by `_went_down`).
        self._errors = (*redis_errors(), RuntimeError)
        try:
            await client.ping()
            await self._beat(leaving=False)
        except self._errors as exc:
            await self._close_client()
            why = reason(exc, self._url, self._password)
            raise ConfigError(f"Redis at {self.url} is unreachable: {why}") from exc
        self._up = True
        log.info("bulkops.redis.connected", url=self.url, runner=self.runner_id, runners=self.runners)

    async def aclose(self) -> None:
        """Leave: the other runners stop counting this one at once. Never raises for Redis trouble."""
        if self._client is None:
            return
        if self._up:
            try:
                await self._beat(leaving=True)
                async with self._client.pipeline(transaction=False) as pipe:
                    for project_id in self._keys_of:
                        pipe.zrem(self.keys.configured(project_id), self.runner_id)
                    pipe.zrem(self.keys.configured(GLOBAL), self.runner_id)
                    await pipe.execute()
            except self._errors:
                pass
        await self._close_client()

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def run(self) -> None:
        """Heartbeat every `HEARTBEAT_EVERY` seconds until cancelled (run it in the caller's task group)."""
        while True:
            await self._clock.sleep(HEARTBEAT_EVERY)
            await self.heartbeat()

    async def heartbeat(self) -> None:
        """Tell Redis this runner is alive; while Redis is away, try it again when due. Never raises."""
        if self._client is None or not (self._up or self._probe_due()):
            return
        try:
            await self._beat(leaving=False)
        except self._errors as exc:
            self._went_down(exc)
            return
        await self._came_back()

    async def _beat(self, *, leaving: bool) -> None:
        assert self._heartbeat_script is not None
        k = self.keys
        runners = await self._heartbeat_script(
            keys=[k.runners, SCOPES_KEY, k.meta, k.projects],
            args=[self.runner_id, RUNNER_TTL, self._ttl_ms, k.scope, self._endpoint, int(leaving)],
        )
        self._fallback.runners = max(1, int(runners))

    # -- the token path ---------------------------------------------------------------------------------

    async def acquire(
        self, project_id: str, *, limit: RateLimit, global_limit: RateLimit | None = None
    ) -> float:
        """Reserve the next send slot for `project_id`: the seconds to sleep before sending (0.0: now).

        `limit` is this runner's configured shape for the project (`Options.rate_for`), `global_limit`
        its `--global-rate`, if any. Never raises for Redis trouble (see the module docstring).
        """
        waits = await self.acquire_many(project_id, 1, limit=limit, global_limit=global_limit)
        return waits[0]

    async def acquire_many(
        self, project_id: str, count: int, *, limit: RateLimit, global_limit: RateLimit | None = None
    ) -> list[float]:
        """Reserve the next `count` send slots for `project_id` in one round trip: the seconds to sleep
        before each (ascending). As `acquire` otherwise."""
        if self._acquire_script is None:
            raise RuntimeError("SharedLimits.connect() must be called first")
        if self._up or self._probe_due():
            try:
                reply = await self._reserve(project_id, limit, global_limit, count)
            except self._errors as exc:
                self._went_down(exc)
            else:
                await self._came_back()
                first = self._shared_answer(project_id, limit, global_limit, reply)
                if count == 1:
                    return [first]
                return [max(0.0, float(w)) for w in str(reply[9]).split(",")]
        now = self._clock.monotonic()
        return [self._fallback.reserve(now, project_id, limit, global_limit) for _ in range(count)]

    async def _reserve(
        self, project_id: str, limit: RateLimit, global_limit: RateLimit | None, count: int
    ) -> Any:
        script = self._acquire_script
        assert script is not None
        keys = self._keys_of.get(project_id)
        if keys is None:
            k = self.keys
            keys = [k.runners, k.projects, SCOPES_KEY, k.project(project_id), k.configured(project_id)]
            keys += [k.project(GLOBAL), k.configured(GLOBAL)]
            self._keys_of[project_id] = keys
        views = self._fallback.views
        seed = views[project_id].learned if project_id in views else None
        gseed = views[GLOBAL].learned if GLOBAL in views else None
        return await script(
            keys=keys,
            args=[
                self.runner_id,
                project_id,
                self.keys.scope,
                self._ttl_ms,
                RUNNER_TTL,
                PACING,
                repr(float(limit.rate)),
                repr(limit.capacity),
                "" if global_limit is None else repr(float(global_limit.rate)),
                repr((global_limit or limit).capacity),
                "" if seed is None else repr(seed),
                "" if gseed is None else repr(gseed),
                count,
            ],
        )

    def _shared_answer(
        self, project_id: str, limit: RateLimit, global_limit: RateLimit | None, reply: Any
    ) -> float:
        wait, low, glow = self._fallback.seen(project_id, reply)
        self._check(project_id, float(limit.rate), low)
        if glow is not None:
            self._check(GLOBAL, None if global_limit is None else float(global_limit.rate), glow)
        return wait

    def _check(self, key: str, mine: float | None, lowest: float) -> None:
        """Warn once per bucket when another runner configured a lower rate (lowest wins)."""
        if key in self._disagreements or (mine is not None and lowest >= mine * (1 - 1e-9)):
            return
        self._disagreements[key] = (mine, lowest)
        log.warning("bulkops.redis.rate_disagrees", project_id=key, configured=mine, used=lowest)

    # -- learning ---------------------------------------------------------------------------------------

    async def learn(
        self,
        project_id: str,
        *,
        rate: float | None = None,
        hold_for: float | None = None,
        shared: bool = False,
        throttled: bool = False,
    ) -> None:
        """Publish what the gateway taught this runner; every runner applies it at its next acquire.

        `rate`: the project's rate from now on (a hint's, or a cut after a bare 429; a higher rate is taken
        too, except within `RAISE_QUIET` seconds of a cut). `hold_for`: send nothing for that many seconds
        (a Retry-After), and no burst after. `shared`: both apply to the credential's global bucket (a
        `policy user|app|ip` hint), not the project's. `throttled`: count one 429 for the project (shown by
        `bulkops limits`). Never raises for Redis trouble: while Redis is away, it applies locally.
        """
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number, got {rate!r}")
        if hold_for is not None and not (math.isfinite(hold_for) and hold_for >= 0):
            raise ValueError(f"hold_for must be zero or more seconds, got {hold_for!r}")
        key = GLOBAL if shared else project_id
        if self._up:
            try:
                await self._publish(project_id, key, rate, hold_for, throttled)
                return
            except self._errors as exc:
                self._went_down(exc)
        if rate is not None:
            self._pending[key] = rate
        self._fallback.learn(self._clock.monotonic(), key, rate=rate, hold_for=hold_for)

    async def _publish(
        self, project_id: str, key: str, rate: float | None, hold_for: float | None, throttled: bool
    ) -> None:
        script = self._learn_script
        if script is None:
            raise RuntimeError("SharedLimits.connect() must be called first")
        k = self.keys
        learned, _held = await script(
            keys=[k.project(key), k.project(project_id), k.projects, SCOPES_KEY],
            args=[
                "" if rate is None else repr(float(rate)),
                "" if hold_for is None else repr(float(hold_for)),
                int(throttled),
                self._ttl_ms,
                RAISE_QUIET,
                RECENT_SPAN,
                project_id,
                k.scope,
            ],
        )
        view = self._fallback.views.get(key)
        if view is not None and learned:
            view.learned = float(learned)

    # -- Redis away and back ----------------------------------------------------------------------------

    def _probe_due(self) -> bool:
        """True at most once per probe delay while Redis is away (the caller then tries it)."""
        now = self._clock.monotonic()
        if self._client is None or now < self._next_probe:
            return False
        self._next_probe = now + self._probe_delay
        self._probe_delay = min(PROBE_MAX, 2 * self._probe_delay)
        return True

    def _went_down(self, exc: BaseException) -> None:
        if isinstance(exc, RuntimeError) and "closed" not in str(exc):
            raise exc  # a bug, not Redis trouble
        if not self._up:
            return
        self._up = False
        self._fallback.reset()
        self._next_probe = self._clock.monotonic() + PROBE_MIN
        self._probe_delay = PROBE_MIN
        log.warning(
            "bulkops.redis.unavailable",
            url=self.url,
            error=reason(exc, self._url, self._password),
            runners=self.runners,
            fallback="local buckets at the shared rate divided by the runners last seen",
        )

    async def _came_back(self) -> None:
        if self._up:
            return
        self._up = True
        self._probe_delay = PROBE_MIN
        self._fallback.reset()
        log.info("bulkops.redis.back", url=self.url)
        pending, self._pending = self._pending, {}
        for key, rate in pending.items():
            await self.learn(key if key != GLOBAL else "", rate=rate, shared=key == GLOBAL)

    # -- what is shared ---------------------------------------------------------------------------------

    async def snapshot(self) -> list[SharedProject]:
        """What is shared now for this endpoint and credential, per project ("*": the credential's)."""
        if self._client is None:
            raise RuntimeError("SharedLimits.connect() must be called first")
        return await read_snapshot(self._client, scope=self.keys.scope, runner_ttl=RUNNER_TTL)
