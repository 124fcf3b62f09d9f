"""The simulator server: one aiohttp.web application that behaves like the DevServer API and its gateway.

    PUT /v1/{project_id}/dev-servers/{id}/stop   stop an instance (200 with the instance, STOPPING)
    PUT /v1/{project_id}/dev-servers/{id}/start  start an instance (200 with the instance, STARTING)
    PUT /v1/{project_id}/dev-servers/{id}/reboot reboot an instance (200 with the instance, REBOOTING)
    GET /v1/{project_id}/dev-servers/{id}        show an instance (200 with its current status)
    GET /v1/{project_id}/dev-servers             list a project's instances, a page at a time (listing.py)
    GET /_sim/stats                              counters per project, as JSON (no auth)
    anything else                                404 APIGW.0101

Each API request goes through the gateway's steps in order: latency, authentication (401), forbidden
project (403), throttling (429), fault injection, then the operation. Every answer carries a unique
`X-Request-Id`. The handler is kept lean for benchmarks: no logging, no middleware, bodies pre-rendered
where they do not depend on the instance, and no body read unless authentication needs it.

`Simulator` holds the state (inventory, instance store, counters, request log) and makes the app;
`run_simulator` serves it on 127.0.0.1 on a free port for the duration of an `async with`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Final

from aiohttp import web

from bulkops.simulator.answers import (
    AUTH_FAILED,
    BAD_STATUS,
    BODY_BAD_STATUS,
    BODY_FORBIDDEN,
    BODY_NO_API,
    BODY_NOT_FOUND,
    FORBIDDEN,
    JSON,
    NOT_FOUND,
    REFUSALS,
    SERVER_ERRORS,
    THROTTLED,
    auth_body,
    instance_body,
)
from bulkops.simulator.config import SimulatorConfig
from bulkops.simulator.faults import FAULT_STATUS, FaultPicker
from bulkops.simulator.inventory import make_inventory
from bulkops.simulator.listing import Lister
from bulkops.simulator.state import InstanceStore, unit
from bulkops.simulator.stats import ProjectStats, RequestRecord, Stats
from bulkops.simulator.throttle import Throttle
from bulkops.simulator.verify import Verifier, credential_key


class Simulator:
    """The simulated API's state, and the request handlers that read and change it.

    Attributes: `config`, `url` (set once serving), `inventory`, `instances` (the state machine, whose
    `overrides` holds every changed instance), `stats`, `request_log` (a bounded deque of RequestRecord).
    `clock` is monotonic seconds (throttling, stop delay); `wall_clock` is POSIX seconds (X-Sdk-Date skew,
    update_at). Both are injectable so that tests step time by hand.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config = config if config is not None else SimulatorConfig()
        self.url = ""
        self.clock = clock
        self.inventory = make_inventory(config.inventory, config.inventory_file)
        self.instances = InstanceStore(
            self.inventory,
            stop_delay=config.stop_delay,
            stop_failed_share=config.stop_failed_share,
            clock=clock,
            wall_clock=wall_clock,
        )
        self.lister = Lister(self.instances)
        self.stats = Stats()
        self.request_log: deque[RequestRecord] = deque(maxlen=config.request_log_size)
        self._record = config.record_requests
        self._throttle = Throttle(config, clock)
        self._faults = FaultPicker(config)
        self._verifier = Verifier(config, wall_clock) if config.auth_enabled else None
        self._forbidden = config.forbidden_projects
        self._rid_prefix = secrets.token_hex(8)
        self._rid = itertools.count(1)
        self._closing = asyncio.Event()

    def build_app(self) -> web.Application:
        """The aiohttp application serving this simulator."""
        app = web.Application()
        app[SIMULATOR] = self
        app.router.add_put("/v1/{project_id}/dev-servers/{id}/stop", self._stop)
        app.router.add_put("/v1/{project_id}/dev-servers/{id}/start", self._start)
        app.router.add_put("/v1/{project_id}/dev-servers/{id}/reboot", self._reboot)
        app.router.add_get("/v1/{project_id}/dev-servers/{id}", self._show, allow_head=False)
        app.router.add_get("/v1/{project_id}/dev-servers", self._list, allow_head=False)
        app.router.add_get("/_sim/stats", self._stats, allow_head=False)
        app.router.add_route("*", "/{tail:.*}", self._no_api)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        self._closing.set()

    def _request_id(self) -> str:
        return f"{self._rid_prefix}{next(self._rid):016x}"

    def _answer(self, status: int, body: bytes, rid: str, retry_after: int | None = None) -> web.Response:
        headers = {"X-Request-Id": rid}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return web.Response(status=status, body=body, content_type=JSON, headers=headers)

    async def _stop(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, op="stop")

    async def _start(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, op="start")

    async def _reboot(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, op="reboot")

    async def _show(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, op=None)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, op=None, listing=True)

    async def _serve(
        self, request: web.Request, *, op: str | None, listing: bool = False
    ) -> web.StreamResponse:
        arrived = self.clock()
        match = request.match_info
        project_id, instance_id = match["project_id"], match.get("id", "")
        pstats = self.stats.project(project_id)
        pstats.requests += 1
        rid = self._request_id()
        faults = self._faults
        if faults.has_latency:
            await asyncio.sleep(faults.delay())

        status, body, code, retry_after = await self._admit(request, project_id, pstats)
        applied, fault = False, None
        if not status:
            fault = faults.draw(project_id)
            if fault is None and listing:
                status, body, code = self.lister.page(project_id, request.query)
            elif fault is None:
                status, body, code, applied = self._operate(project_id, instance_id, op=op)
            elif fault == "reset":
                pstats.fault(fault)
                return self._reset(
                    request,
                    RequestRecord(arrived, request.method, project_id, instance_id, None, None, False, fault),
                )
            else:
                pstats.fault(fault)
                status, body, code, applied = await self._inject(fault, project_id, instance_id, op=op)
        if applied:
            pstats.state_changes += 1
        pstats.answered(status)
        if self._record:
            self.request_log.append(
                RequestRecord(arrived, request.method, project_id, instance_id, status, code, applied, fault)
            )
        return self._answer(status, body, rid, retry_after)

    def _operate(
        self, project_id: str, instance_id: str, *, op: str | None
    ) -> tuple[int, bytes, str | None, bool]:
        """An operation (`op`: stop, start, reboot), or show (None): (status, body, error_code, applied)."""
        if op is None:
            current = self.instances.status(project_id, instance_id)
            if current is None:
                return self._not_found(instance_id)
            return 200, instance_body(instance_id, *current), None, False
        now_status, applied, update_ms = self.instances.apply(op, project_id, instance_id)
        if applied:
            assert now_status is not None
            return 200, instance_body(instance_id, now_status, update_ms), None, True
        if now_status is None:
            return self._not_found(instance_id)
        code, body = REFUSALS.get(now_status, (BAD_STATUS[0], BODY_BAD_STATUS))
        return 400, body, code, False

    async def _inject(
        self, fault: str, project_id: str, instance_id: str, *, op: str | None
    ) -> tuple[int, bytes, str | None, bool]:
        """An answering fault: (status, body, error_code, applied)."""
        applied = False
        if fault == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.config.hang_seconds)
            status = 504
        elif fault == "applied_then_503":
            if op is not None:
                applied = self.instances.apply(op, project_id, instance_id)[1]
            status = 503
        else:
            status = FAULT_STATUS[fault]
        code, body = SERVER_ERRORS[status]
        return status, body, code, applied

    async def _admit(
        self, request: web.Request, project_id: str, pstats: ProjectStats
    ) -> tuple[int, bytes, str | None, int | None]:
        """The gateway's checks: (0, ...) when the request may proceed, else the answer to give.

        Returns (status, body, error_code, retry_after).
        """
        verifier = self._verifier
        if verifier is not None:
            body = await request.read() if request.body_exists else b""
            path = request.raw_path.split("?", 1)[0]
            credential, reason = verifier.verify(
                request.method, path, request.query.items(), request.headers, body
            )
            if credential is None:
                return 401, auth_body(reason or ""), AUTH_FAILED, None
        else:
            credential = credential_key(request.headers)
        if project_id in self._forbidden:
            return 403, BODY_FORBIDDEN, FORBIDDEN[0], None
        refusal = self._throttle.admit(project_id, credential)
        if refusal is not None:
            pstats.throttled += 1
            retry_after = refusal.retry_after if self.config.retry_after else None
            return 429, refusal.body, THROTTLED, retry_after
        return 0, b"", None, None

    def _not_found(self, instance_id: str) -> tuple[int, bytes, str, bool]:
        share = self.config.not_found_404_share
        status = 404 if share >= 1.0 or (share > 0 and unit(instance_id) < share) else 400
        return status, BODY_NOT_FOUND, NOT_FOUND[0], False

    def _reset(self, request: web.Request, record: RequestRecord) -> web.Response:
        if self._record:
            self.request_log.append(record)
        transport = request.transport
        if transport is not None:
            transport.abort()
        # aiohttp's attempt to write this to the aborted transport fails quietly (a ConnectionError it
        # expects), so the client sees a disconnect and the server logs nothing.
        return web.Response(status=500)

    async def _stats(self, request: web.Request) -> web.Response:
        payload = self.stats.as_dict()
        payload["overrides"] = len(self.instances.overrides)
        return web.Response(
            body=json.dumps(payload).encode(),
            content_type=JSON,
            headers={"X-Request-Id": self._request_id()},
        )

    async def _no_api(self, request: web.Request) -> web.Response:
        return self._answer(404, BODY_NO_API, self._request_id())


#: Where `build_app` keeps the Simulator in the aiohttp application: `app[SIMULATOR]`.
SIMULATOR: Final = web.AppKey("simulator", Simulator)


def build_app(
    config: SimulatorConfig | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> web.Application:
    """A fresh simulator's application; the Simulator itself is `app[SIMULATOR]`."""
    return Simulator(config, clock=clock, wall_clock=wall_clock).build_app()


@contextlib.asynccontextmanager
async def run_simulator(
    config: SimulatorConfig | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Simulator]:
    """Serve a simulator on `config.host` (127.0.0.1) and `config.port` (0: a free one) while inside.

    The yielded Simulator's `url` is `http://127.0.0.1:<port>`. Leaving ends hanging requests at once and
    closes every connection.
    """
    simulator = Simulator(config, clock=clock, wall_clock=wall_clock)
    runner = web.AppRunner(simulator.build_app(), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, simulator.config.host, simulator.config.port)
        await site.start()
        port = runner.addresses[0][1]
        simulator.url = f"http://{simulator.config.host}:{port}"
        yield simulator
    finally:
        simulator._closing.set()
        await runner.cleanup()
