"""The simulator answers like the DevServer API: bodies, errors, state machine, throttling, faults, stats."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from bulkops.simulator import (
    FaultShares,
    InventorySpec,
    Limit,
    Simulator,
    SimulatorConfig,
    run_simulator,
)
from bulkops.simulator.faults import FaultPicker

ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def quiet(**kwargs: Any) -> SimulatorConfig:
    """A config without auth, on a small fleet, with the given overrides."""
    base = SimulatorConfig(
        auth_enabled=False, inventory=InventorySpec(projects=3, instances_per_project=200, seed=7)
    )
    return dataclasses.replace(base, **kwargs)


@asynccontextmanager
async def serve(
    config: SimulatorConfig, clock: FakeClock | None = None
) -> AsyncIterator[tuple[Simulator, aiohttp.ClientSession]]:
    """A running simulator and a client session for it."""
    kwargs = {"clock": clock} if clock is not None else {}
    async with run_simulator(config, **kwargs) as sim, aiohttp.ClientSession() as session:
        yield sim, session


def find(sim: Simulator, status: str, project: int = 0, skip: int = 0) -> tuple[str, str]:
    """(project_id, id) of an instance generated with `status`."""
    project_id = sim.inventory.project_ids[project]
    found = (i for i, s in sim.inventory.iter_instances(project_id) if s == status)
    for _ in range(skip):
        next(found)
    return project_id, next(found)


def stop_url(sim: Simulator, project_id: str, instance_id: str) -> str:
    return f"{sim.url}/v1/{project_id}/dev-servers/{instance_id}/stop"


def show_url(sim: Simulator, project_id: str, instance_id: str) -> str:
    return f"{sim.url}/v1/{project_id}/dev-servers/{instance_id}"


async def call(
    session: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, CIMultiDict[str], Any]:
    """(status, headers (case-insensitive), JSON body) of one request."""
    async with session.request(method, url, **kw) as resp:
        return resp.status, resp.headers.copy(), await resp.json()


def unknown_ids(sim: Simulator, project_id: str, n: int) -> Iterator[str]:
    inv = sim.inventory
    return (inv.unknown_id(project_id, j) for j in range(n))


@pytest.mark.anyio
async def test_stop_running_answers_200_with_instance_body_and_request_id() -> None:
    """A stop of a RUNNING instance answers 200 with the reference's instance shape, status STOPPING."""
    async with serve(quiet()) as (sim, session):
        project_id, instance_id = find(sim, "RUNNING")
        status, headers, body = await call(session, "PUT", stop_url(sim, project_id, instance_id))
    assert status == 200
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"])
    assert headers["Content-Type"].startswith("application/json")
    assert body["id"] == instance_id and body["status"] == "STOPPING"
    for key in ("name", "flavor", "charging_mode", "cloud_server", "create_at", "update_at", "image"):
        assert key in body
    assert isinstance(body["create_at"], int) and body["update_at"] >= body["create_at"]
    assert set(body["image"]) >= {"arch", "image_id", "name", "server_type"}


@pytest.mark.anyio
async def test_stop_on_stopped_and_stopping_answers_6307_and_6308() -> None:
    """A repeated stop is refused with the documented codes: 6308 while stopping, 6307 once stopped."""
    clock = FakeClock()
    async with serve(quiet(stop_delay=10.0), clock) as (sim, session):
        project_id, stopped = find(sim, "STOPPED")
        status, _, body = await call(session, "PUT", stop_url(sim, project_id, stopped))
        assert (status, body) == (
            400,
            {"error_code": "ModelArts.6307", "error_msg": "The instance has already been stopped."},
        )
        _, running = find(sim, "RUNNING")
        assert (await call(session, "PUT", stop_url(sim, project_id, running)))[0] == 200
        status, _, body = await call(session, "PUT", stop_url(sim, project_id, running))
        assert (status, body) == (
            400,
            {"error_code": "ModelArts.6308", "error_msg": "The instance is stopping."},
        )
        clock.advance(10.0)
        status, _, body = await call(session, "PUT", stop_url(sim, project_id, running))
        assert (status, body["error_code"]) == (400, "ModelArts.6307")


@pytest.mark.anyio
@pytest.mark.parametrize(("share", "expected"), [(1.0, {404}), (0.0, {400}), (0.5, {400, 404})])
async def test_unknown_ids_answer_6309_as_404_or_400(share: float, expected: set[int]) -> None:
    """Unknown ids answer ModelArts.6309, as 404 or 400 by the configured share, the same way per id."""
    async with serve(quiet(not_found_404_share=share)) as (sim, session):
        project_id = sim.inventory.project_ids[0]
        seen: dict[str, int] = {}
        for instance_id in unknown_ids(sim, project_id, 40):
            status, _, body = await call(session, "PUT", stop_url(sim, project_id, instance_id))
            assert body == {"error_code": "ModelArts.6309", "error_msg": "The instance does not exist."}
            seen[instance_id] = status
        for instance_id, status in list(seen.items())[:10]:
            assert (await call(session, "GET", show_url(sim, project_id, instance_id)))[0] == status
        unknown_project = "f" * 32
        status, _, body = await call(session, "PUT", stop_url(sim, unknown_project, next(iter(seen))))
        assert body["error_code"] == "ModelArts.6309"
    assert set(seen.values()) == expected


@pytest.mark.anyio
async def test_other_states_are_refused_with_6310() -> None:
    """An instance in a status that cannot be stopped (ERROR) is refused with a 400 ModelArts.6310."""
    async with serve(quiet()) as (sim, session):
        project_id, instance_id = find(sim, "ERROR")
        status, _, body = await call(session, "PUT", stop_url(sim, project_id, instance_id))
    assert status == 400
    assert body == {
        "error_code": "ModelArts.6310",
        "error_msg": "The instance status does not allow this operation.",
    }
    assert not sim.instances.overrides


@pytest.mark.anyio
async def test_show_follows_the_state_machine_on_a_fake_clock() -> None:
    """GET shows RUNNING, then STOPPING after a stop, then STOPPED once the stop delay has passed."""
    clock = FakeClock()
    async with serve(quiet(stop_delay=30.0), clock) as (sim, session):
        project_id, instance_id = find(sim, "RUNNING")
        url = show_url(sim, project_id, instance_id)
        status, headers, body = await call(session, "GET", url)
        assert (status, body["status"], body["id"]) == (200, "RUNNING", instance_id)
        assert "X-Request-Id" in headers
        await call(session, "PUT", stop_url(sim, project_id, instance_id))
        assert (await call(session, "GET", url))[2]["status"] == "STOPPING"
        clock.advance(29.9)
        assert (await call(session, "GET", url))[2]["status"] == "STOPPING"
        clock.advance(0.1)
        _, _, body = await call(session, "GET", url)
        assert body["status"] == "STOPPED"
        assert list(sim.instances.overrides) == [(project_id, instance_id)]


@pytest.mark.anyio
async def test_initially_stopping_instances_finish_after_the_delay() -> None:
    """Instances generated as STOPPING answer 6308 and become STOPPED after the delay, without storage."""
    clock = FakeClock()
    async with serve(quiet(stop_delay=5.0), clock) as (sim, session):
        project_id, instance_id = find(sim, "STOPPING")
        assert (await call(session, "PUT", stop_url(sim, project_id, instance_id)))[2]["error_code"] == (
            "ModelArts.6308"
        )
        clock.advance(5.0)
        assert (await call(session, "GET", show_url(sim, project_id, instance_id)))[2]["status"] == "STOPPED"
    assert not sim.instances.overrides


@pytest.mark.anyio
async def test_stop_failed_share_ends_in_stop_failed_which_can_be_stopped_again() -> None:
    """With stop_failed_share=1 a stop ends in STOP_FAILED, and a STOP_FAILED instance accepts a new stop."""
    clock = FakeClock()
    async with serve(quiet(stop_delay=1.0, stop_failed_share=1.0), clock) as (sim, session):
        project_id, instance_id = find(sim, "RUNNING")
        await call(session, "PUT", stop_url(sim, project_id, instance_id))
        clock.advance(1.0)
        assert (await call(session, "GET", show_url(sim, project_id, instance_id)))[2][
            "status"
        ] == "STOP_FAILED"
        status, _, body = await call(session, "PUT", stop_url(sim, project_id, instance_id))
        assert (status, body["status"]) == (200, "STOPPING")


@pytest.mark.anyio
async def test_every_answer_carries_a_request_id() -> None:
    """X-Request-Id is on every answer: success, 4xx, 401, 403, 429, 5xx, unknown routes and stats."""
    config = quiet(
        project_limit=Limit(1),
        forbidden_projects=frozenset({"a" * 32}),
        faults=FaultShares(http_500=1.0),
        fault_projects=frozenset({"b" * 32}),
    )
    async with serve(config) as (sim, session):
        project_id, instance_id = find(sim, "RUNNING")
        urls = [
            ("PUT", stop_url(sim, project_id, instance_id)),  # 200
            ("PUT", stop_url(sim, project_id, instance_id)),  # 429
            ("PUT", stop_url(sim, "a" * 32, instance_id)),  # 403
            ("GET", show_url(sim, "b" * 32, instance_id)),  # 500
            ("POST", stop_url(sim, project_id, instance_id)),  # 404 APIGW.0101
            ("GET", f"{sim.url}/nothing/here"),
            ("GET", f"{sim.url}/_sim/stats"),
        ]
        seen = []
        for method, url in urls:
            async with session.request(method, url) as resp:
                seen.append((resp.status, resp.headers.get("X-Request-Id")))
    assert [s for s, _ in seen] == [200, 429, 403, 500, 404, 404, 200]
    rids = [r for _, r in seen]
    assert all(rids) and len(set(rids)) == len(rids)


@pytest.mark.anyio
async def test_auth_failure_answers_401_with_request_id() -> None:
    """With auth on, an unsigned request is a 401 APIGW.0301 with an X-Request-Id."""
    async with serve(quiet(auth_enabled=True)) as (sim, session):
        project_id, instance_id = find(sim, "RUNNING")
        status, headers, body = await call(session, "PUT", stop_url(sim, project_id, instance_id))
    assert status == 401 and "X-Request-Id" in headers
    assert body["error_code"] == "APIGW.0301"
    assert str(body["error_msg"]).startswith("Incorrect IAM authentication information")


@pytest.mark.anyio
async def test_project_throttling_per_second_on_a_fake_clock() -> None:
    """A 3/s project limit passes 3 requests, refuses the 4th with APIG.0308, and refills at 3 per second."""
    clock = FakeClock()
    async with serve(quiet(project_limit=Limit(3, "second")), clock) as (sim, session):
        project_id, instance_id = find(sim, "RUNNING")
        url = show_url(sim, project_id, instance_id)
        statuses = [(await call(session, "GET", url))[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        status, headers, body = await call(session, "GET", url)
        assert status == 429 and "Retry-After" not in headers
        assert body == {
            "error_code": "APIG.0308",
            "error_msg": "The throttling threshold has been reached: "
            "policy api over ratelimit,limit:3,time:1 second",
        }
        clock.advance(1 / 3)
        assert [(await call(session, "GET", url))[0] for _ in range(2)] == [200, 429]
        other = sim.inventory.project_ids[1]
        _, _, body = await call(session, "GET", show_url(sim, other, instance_id))
        assert body["error_code"] == "ModelArts.6309"  # its own bucket: not throttled
    assert sim.stats.projects[project_id].throttled == 3


@pytest.mark.anyio
async def test_throttling_per_minute_with_retry_after() -> None:
    """A 2/minute limit says `time:1 minute`, sends Retry-After when configured, and refills in 30 s."""
    clock = FakeClock()
    config = quiet(project_limit=Limit(2, "minute"), retry_after=True)
    async with serve(config, clock) as (sim, session):
        project_id, instance_id = find(sim, "RUNNING")
        url = show_url(sim, project_id, instance_id)
        assert [(await call(session, "GET", url))[0] for _ in range(2)] == [200, 200]
        status, headers, body = await call(session, "GET", url)
        assert status == 429 and headers["Retry-After"] == "30"
        assert str(body["error_msg"]).endswith("policy api over ratelimit,limit:2,time:1 minute")
        clock.advance(20)
        assert (await call(session, "GET", url))[1]["Retry-After"] == "10"
        clock.advance(10)
        assert (await call(session, "GET", url))[0] == 200


@pytest.mark.anyio
async def test_per_project_limits_differ_and_none_means_unlimited() -> None:
    """A project's own limit replaces the default; None makes that project unlimited."""
    clock = FakeClock()
    async with serve(quiet(project_limit=Limit(1), stop_delay=1), clock) as (sim, session):
        pass
    p0, p1, p2 = sim.inventory.project_ids
    config = quiet(project_limit=Limit(1), project_limits={p1: Limit(3), p2: None})
    async with serve(config, clock) as (sim, session):
        counts = {}
        for p in (p0, p1, p2):
            _, instance_id = find(sim, "RUNNING", sim.inventory.project_ids.index(p))
            statuses = [(await call(session, "GET", show_url(sim, p, instance_id)))[0] for _ in range(10)]
            counts[p] = statuses.count(200)
    assert counts == {p0: 1, p1: 3, p2: 10}


@pytest.mark.anyio
async def test_credential_limit_is_shared_across_projects() -> None:
    """A per-credential limit counts one credential's requests across every project it touches."""
    clock = FakeClock()
    async with serve(quiet(credential_limit=Limit(2)), clock) as (sim, session):
        ids = [find(sim, "RUNNING", p) for p in range(3)]
        a = {"X-Auth-Token": "token-a"}
        b = {"X-Auth-Token": "token-b"}
        results = [(await call(session, "GET", show_url(sim, p, i), headers=a)) for p, i in ids]
        assert [r[0] for r in results] == [200, 200, 429]
        assert str(results[2][2]["error_msg"]).endswith("policy user over ratelimit,limit:2,time:1 second")
        assert (await call(session, "GET", show_url(sim, *ids[2]), headers=b))[0] == 200
        clock.advance(0.5)
        assert (await call(session, "GET", show_url(sim, *ids[2]), headers=a))[0] == 200


def test_fault_shares_are_within_statistical_bounds() -> None:
    """Each fault kind is drawn at its configured share (20,000 draws, within 5 standard deviations)."""
    shares = FaultShares(http_500=0.1, http_502=0.05, http_503=0.05, http_504=0.02, reset=0.03, hang=0.01,
                         applied_then_503=0.04)  # fmt: skip
    picker = FaultPicker(SimulatorConfig(seed=3, faults=shares))
    n = 20_000
    counts: dict[str | None, int] = {}
    for _ in range(n):
        kind = picker.draw("p")
        counts[kind] = counts.get(kind, 0) + 1
    for kind, share in {"http_500": 0.1, "http_502": 0.05, "http_503": 0.05, "http_504": 0.02, "reset": 0.03,
                        "hang": 0.01, "applied_then_503": 0.04}.items():  # fmt: skip
        sigma = (n * share * (1 - share)) ** 0.5
        assert abs(counts.get(kind, 0) - n * share) < 5 * sigma, kind
    assert abs(counts[None] - n * 0.7) < 5 * (n * 0.21) ** 0.5


@pytest.mark.anyio
async def test_same_seed_repeats_the_same_fault_sequence_over_http() -> None:
    """Two simulators with the same seed answer the same request sequence identically; retries can pass."""
    faults = FaultShares(http_500=0.2, http_502=0.1, http_503=0.1, http_504=0.1)

    async def run(seed: int) -> list[int]:
        async with serve(quiet(seed=seed, faults=faults)) as (sim, session):
            project_id, instance_id = find(sim, "RUNNING")
            url = show_url(sim, project_id, instance_id)
            statuses = [(await call(session, "GET", url))[0] for _ in range(300)]
            assert sum(sim.stats.projects[project_id].faults.values()) == 300 - statuses.count(200)
            return statuses

    first, second, other = await run(11), await run(11), await run(12)
    assert first == second
    assert first != other
    assert set(first) == {200, 500, 502, 503, 504}
    assert 0.35 < 1 - first.count(200) / 300 < 0.65


@pytest.mark.anyio
async def test_reset_gives_the_client_a_connection_error() -> None:
    """A reset fault closes the connection without an answer: the client sees a disconnect, not a response."""
    async with serve(quiet(faults=FaultShares(reset=1.0))) as (sim, _):
        project_id, instance_id = find(sim, "RUNNING")
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
                await call(session, "PUT", stop_url(sim, project_id, instance_id))
    assert not sim.instances.overrides
    record = sim.request_log[-1]
    assert (record.http_status, record.fault, record.applied) == (None, "reset", False)


@pytest.mark.anyio
async def test_hang_outlasts_a_client_timeout_without_blocking_the_server() -> None:
    """A hang outlasts a short client timeout while other requests are served; shutdown ends it at once."""
    async with serve(
        quiet(faults=FaultShares(hang=1.0), hang_seconds=60.0, fault_projects=frozenset({"h" * 32}))
    ) as (
        sim,
        session,
    ):
        project_id, instance_id = find(sim, "RUNNING")
        hanging = asyncio.create_task(
            call(
                session, "GET", show_url(sim, "h" * 32, instance_id), timeout=aiohttp.ClientTimeout(total=0.3)
            )
        )
        status, _, _ = await call(session, "GET", show_url(sim, project_id, instance_id))
        assert status == 200 and not hanging.done()
        with pytest.raises(asyncio.TimeoutError):
            await hanging
    assert sim.stats.projects["h" * 32].faults == {"hang": 1}


@pytest.mark.anyio
async def test_applied_then_503_changes_state_but_answers_503() -> None:
    """An applied-then-503 fault stops the instance yet answers 503, so only a retry can tell."""
    async with serve(quiet(faults=FaultShares(applied_then_503=1.0))) as (sim, session):
        project_id, instance_id = find(sim, "RUNNING")
        status, headers, body = await call(session, "PUT", stop_url(sim, project_id, instance_id))
    assert status == 503 and "X-Request-Id" in headers
    assert body["error_code"] == "APIGW.0201"
    current = sim.instances.status(project_id, instance_id)
    assert current is not None and current[0] == "STOPPING"
    record = sim.request_log[-1]
    assert (record.http_status, record.applied, record.fault, record.method) == (
        503,
        True,
        "applied_then_503",
        "PUT",
    )
    assert sim.stats.projects[project_id].state_changes == 1


@pytest.mark.anyio
async def test_forbidden_project_answers_403() -> None:
    """A project marked forbidden answers 403 APIGW.0302 and its instances are not touched."""
    async with serve(quiet()) as (sim, session):
        pass
    forbidden = sim.inventory.project_ids[0]
    async with serve(quiet(forbidden_projects=frozenset({forbidden}))) as (sim, session):
        _, instance_id = find(sim, "RUNNING")
        status, _, body = await call(session, "PUT", stop_url(sim, forbidden, instance_id))
    assert status == 403
    assert body == {
        "error_code": "APIGW.0302",
        "error_msg": "The IAM user is not authorized to access the API.",
    }
    assert not sim.instances.overrides


@pytest.mark.anyio
async def test_stats_route_and_request_log_count_what_happened() -> None:
    """GET /_sim/stats reports requests, answers by code, 429s, faults and state changes per project."""
    clock = FakeClock()
    async with serve(quiet(project_limit=Limit(2)), clock) as (sim, session):
        project_id, instance_id = find(sim, "RUNNING")
        for _ in range(3):
            await call(session, "PUT", stop_url(sim, project_id, instance_id))
        status, _, stats = await call(session, "GET", f"{sim.url}/_sim/stats")
    assert status == 200
    project = stats["projects"][project_id]
    assert project == {
        "requests": 3,
        "by_status": {"200": 1, "400": 1, "429": 1},
        "throttled": 1,
        "faults": {},
        "state_changes": 1,
    }
    assert stats["totals"]["requests"] == 3 and stats["overrides"] == 1
    log = list(sim.request_log)
    assert [(r.http_status, r.error_code, r.applied) for r in log] == [
        (200, None, True),
        (400, "ModelArts.6308", False),
        (429, "APIG.0308", False),
    ]
    assert all(r.project_id == project_id and r.id == instance_id and r.time == clock.now for r in log)


@pytest.mark.anyio
async def test_request_log_is_bounded_or_off() -> None:
    """The request log keeps at most request_log_size records, and none with record_requests off."""
    async with serve(quiet(request_log_size=5)) as (sim, session):
        project_id, instance_id = find(sim, "RUNNING")
        for _ in range(8):
            await call(session, "GET", show_url(sim, project_id, instance_id))
        assert len(sim.request_log) == 5
    async with serve(quiet(record_requests=False)) as (sim, session):
        await call(session, "GET", show_url(sim, project_id, instance_id))
        assert len(sim.request_log) == 0 and sim.stats.totals().requests == 1


def test_config_rejects_nonsense() -> None:
    """Impossible knobs fail at construction with a message naming them."""
    with pytest.raises(ValueError, match="more than 1"):
        FaultShares(http_500=0.6, reset=0.6)
    with pytest.raises(ValueError, match="stop_failed_share"):
        SimulatorConfig(stop_failed_share=1.5)
    with pytest.raises(ValueError, match="rate limit"):
        Limit.parse("ten per second")
    assert Limit.parse("600/min") == Limit(600, "minute")
    assert Limit.parse("10/s") == Limit(10, "second")


@pytest.mark.anyio
async def test_stop_response_body_is_json_the_reference_way() -> None:
    """The 200 body parses as JSON with the reference example's key set and a valid id."""
    async with serve(quiet()) as (sim, session):
        project_id, instance_id = find(sim, "RUNNING")
        async with session.put(stop_url(sim, project_id, instance_id)) as resp:
            raw = await resp.read()
    body = json.loads(raw)
    assert set(body) == {
        "charging_mode", "cloud_server", "create_at", "flavor", "id", "image", "name", "status", "update_at",
    }  # fmt: skip
    assert ID_RE.match(body["id"])
