"""The DevServer client: one request per attempt, every answer and transport failure parsed into a Reply."""

from __future__ import annotations

import pytest

from bulkops.cloud.api import DevServerClient, check_endpoint, request_path
from bulkops.cloud.auth import Credentials
from bulkops.errors import ConfigError
from bulkops.models import CONNECTION_ERROR
from bulkops.simulator import AccessKey, FaultShares, InventorySpec, Limit, SimulatorConfig, run_simulator

pytestmark = pytest.mark.anyio

AK, SK = "AKAPITEST", "sk-api-test"


def test_request_path_refuses_anything_but_valid_ids() -> None:
    """No path is ever built from a bad project or instance id."""
    good = "00000000-0000-4000-8000-000000000001"
    assert request_path("p1", good, "stop") == f"/v1/p1/dev-servers/{good}/stop"
    for project, iid in [
        ("../x", good),
        ("p", "../../x"),
        ("p%2F", good),
        ("p", "62383738-E52A-450A-9F84-F9E705402BE8"),
        ("p", good + "\n"),
    ]:
        with pytest.raises(ValueError):
            request_path(project, iid, "stop")


def test_plain_http_only_for_loopback() -> None:
    """http:// is accepted for loopback, refused elsewhere unless insecure is asked for."""
    check_endpoint("http://127.0.0.1:8080")
    check_endpoint("http://localhost:1")
    with pytest.raises(ConfigError, match="plain http"):
        check_endpoint("http://modelarts.example.com")
    _, flagged = check_endpoint("http://modelarts.example.com", insecure=True)
    assert flagged
    for bad in ("ftp://x", "not a url", "https://h/?q=1", "https://user:pw@h"):
        with pytest.raises(ConfigError):
            check_endpoint(bad)


def _config(**kw: object) -> SimulatorConfig:
    base: dict[str, object] = {
        "inventory": InventorySpec(projects=1, instances_per_project=20, status_mix={"RUNNING": 1.0}),
        "access_keys": (AccessKey(AK, SK),),
    }
    base.update(kw)
    return SimulatorConfig(**base)  # type: ignore[arg-type]


async def test_stop_and_show_parse_answers() -> None:
    """A signed stop returns 200 STOPPING with a request id; a second stop returns the 6308 error code."""
    async with run_simulator(_config()) as sim:
        project = sim.inventory.project_ids[0]
        iid = next(sim.inventory.iter_instances(project))[0]
        async with DevServerClient(sim.url, Credentials(ak=AK, sk=SK)) as client:
            first = await client.stop(project, iid)
            again = await client.stop(project, iid)
            shown = await client.show(project, iid)
    assert (first.http_status, first.status) == (200, "STOPPING")
    assert first.request_id
    assert (again.http_status, again.error_code) == (400, "ModelArts.6308")
    assert shown.http_status == 200 and shown.status in ("STOPPING", "STOPPED")


async def test_wrong_secret_is_a_401_reply() -> None:
    """A bad signature comes back as a 401 reply, not an exception."""
    async with run_simulator(_config()) as sim:
        project = sim.inventory.project_ids[0]
        iid = next(sim.inventory.iter_instances(project))[0]
        async with DevServerClient(sim.url, Credentials(ak=AK, sk="wrong")) as client:
            reply = await client.stop(project, iid)
    assert reply.http_status == 401
    assert reply.error_code and reply.error_code.startswith("APIGW.")


async def test_throttle_reply_carries_retry_after() -> None:
    """A 429 is parsed with its error code, message and Retry-After."""
    async with run_simulator(_config(project_limit=Limit(1), retry_after=True)) as sim:
        project = sim.inventory.project_ids[0]
        ids = [i for i, _ in sim.inventory.iter_instances(project)][:3]
        async with DevServerClient(sim.url, Credentials(ak=AK, sk=SK)) as client:
            replies = [await client.stop(project, i) for i in ids]
    throttled = [r for r in replies if r.http_status == 429]
    assert throttled and throttled[0].error_code == "APIG.0308"
    assert throttled[0].retry_after is not None
    assert "limit:1" in (throttled[0].error_msg or "")


async def test_reset_is_one_attempt_not_a_hidden_resend() -> None:
    """A dropped connection is a connection error after exactly one request (no silent re-send)."""
    async with run_simulator(_config(faults=FaultShares(reset=1.0))) as sim:
        project = sim.inventory.project_ids[0]
        ids = [i for i, _ in sim.inventory.iter_instances(project)][:5]
        async with DevServerClient(sim.url, Credentials(ak=AK, sk=SK)) as client:
            replies = [await client.stop(project, i) for i in ids]
        arrived = sim.stats.projects[project].requests
    assert all(r.http_status is None and r.error_code == CONNECTION_ERROR for r in replies)
    assert arrived == 5


async def test_timeout_is_a_reply() -> None:
    """An attempt that outlives --timeout becomes a bulkops.timeout reply."""
    async with run_simulator(_config(faults=FaultShares(hang=1.0), hang_seconds=5.0)) as sim:
        project = sim.inventory.project_ids[0]
        iid = next(sim.inventory.iter_instances(project))[0]
        async with DevServerClient(sim.url, Credentials(ak=AK, sk=SK), timeout=0.2) as client:
            reply = await client.stop(project, iid)
    assert reply.http_status is None and reply.error_code == "bulkops.timeout"


async def test_connection_refused_is_a_reply() -> None:
    """Nobody listening is a connection error reply, not an exception."""
    async with DevServerClient("http://127.0.0.1:9", None, timeout=2) as client:
        reply = await client.stop("p1", "00000000-0000-4000-8000-000000000001")
    assert reply.http_status is None and reply.error_code == CONNECTION_ERROR


async def test_requests_name_bulkops_and_carry_no_cookie() -> None:
    """Every request says `User-Agent: bulkops/...`; a cookie set by one answer never rides on the next."""
    from aiohttp import web

    seen: list[tuple[str | None, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append((request.headers.get("User-Agent"), request.headers.get("Cookie")))
        resp = web.json_response({"status": "STOPPING"})
        resp.set_cookie("session", "sticky")
        return resp

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with DevServerClient(f"http://localhost:{port}", Credentials(ak=AK, sk=SK)) as client:
            iid = "00000000-0000-4000-8000-000000000001"
            for _ in range(2):
                assert (await client.stop("p1", iid)).status == "STOPPING"
    finally:
        await runner.cleanup()
    assert [ua.split("/")[0] if ua else None for ua, _ in seen] == ["bulkops", "bulkops"]
    assert [cookie for _, cookie in seen] == [None, None]


@pytest.mark.parametrize(
    "body",
    [
        b'{"status":"STOPPING"}',
        b'  {"status": "STOPPING"}\r\n',
        b'\xef\xbb\xbf{"status":"STOPPING"}',
        b'{"status":"STOPPING"} trailing',
        b'{"status":"STOPPING"}{"x":1}',
        b'{"error_msg":"caf\xc3\xa9"}',
        b'{"status":"\xff"}',
        b"[1, 2]",
        b"not json",
        b"",
        b'{"a": NaN}',
        '{"status":"STOPPING"}'.encode("utf-16"),
        '{"status":"STOPPING"}'.encode("utf-16-le"),
        '{"status":"STOPPING"}'.encode("utf-32"),
        b'"\xed\xa0\x80"',
        b"1\x00",
    ],
)
def test_answer_json_reads_as_json_loads(body: bytes) -> None:
    """An answer body is read exactly as `json.loads` reads it: the same value, or refused as not JSON."""
    import json

    from bulkops.cloud.api import _load_json

    try:
        expected = json.loads(body)
    except ValueError:
        with pytest.raises(ValueError):
            _load_json(body)
    else:
        assert _load_json(body) == expected


def test_answer_nested_too_deep_is_a_bad_response() -> None:
    """An answer nested deeper than the interpreter can parse is a bad response, not a crashed worker."""
    from bulkops.cloud.api import _parse

    reply = _parse(502, b"[" * 100_000, None, None)
    assert reply.http_status == 502 and reply.error_msg is not None and "not a JSON object" in reply.error_msg
