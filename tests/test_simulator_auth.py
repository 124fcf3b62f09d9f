"""The simulator authenticates like the gateway: every signed part counts, tokens checked, nothing leaks."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from yarl import URL

from bulkops.cloud.auth import Credentials, Signer, auth_headers, sdk_date
from bulkops.simulator import AccessKey, InventorySpec, SimulatorConfig, run_simulator

AK, SK = "SIMTESTAK0000000001", "sim-test-secret-key-value-0001"
TEMP_AK, TEMP_SK, SECURITY_TOKEN = "SIMTEMPAK000000002", "sim-temp-secret-0002", "sim-security-token-0003"
IAM_TOKEN = "sim-iam-token-value-0004"
SECRETS = (SK, TEMP_SK, SECURITY_TOKEN, IAM_TOKEN)

CONFIG = SimulatorConfig(
    inventory=InventorySpec(projects=2, instances_per_project=50, status_mix={"RUNNING": 1.0}, seed=5),
    access_keys=(AccessKey(AK, SK), AccessKey(TEMP_AK, TEMP_SK, SECURITY_TOKEN)),
    auth_tokens=frozenset({IAM_TOKEN}),
    max_clock_skew=900.0,
)


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes = b"",
) -> tuple[int, Any]:
    """Send exactly these headers (Host included) and return (status, JSON body)."""
    async with session.request(method, url, headers=headers, data=body or None) as resp:
        assert "X-Request-Id" in resp.headers
        return resp.status, await resp.json()


def signed(
    url: str,
    method: str = "PUT",
    *,
    ak: str = AK,
    sk: str = SK,
    body: bytes = b"",
    now: float | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Headers of a request signed with bulkops.cloud.auth's Signer (Host as the client will send it)."""
    u = URL(url)
    headers = {"Host": f"{u.host}:{u.port}", "X-Sdk-Date": sdk_date(now), **(extra or {})}
    query = list(u.query.items())
    headers["Authorization"] = Signer(ak, sk).authorization(method, u.raw_path, query, headers, body)
    return headers


@pytest.mark.anyio
async def test_a_correct_signature_is_accepted() -> None:
    """A request signed by a configured AK/SK (via bulkops.cloud.auth.auth_headers) is served."""
    async with run_simulator(CONFIG) as sim, aiohttp.ClientSession() as session:
        project_id = sim.inventory.project_ids[0]
        instance_id = next(sim.inventory.iter_instances(project_id))[0]
        path = f"/v1/{project_id}/dev-servers/{instance_id}/stop"
        creds = Credentials(ak=AK, sk=SK)
        headers = auth_headers(
            creds,
            Signer(AK, SK),
            method="PUT",
            host=URL(sim.url).raw_authority,
            path=path,
            project_id=project_id,
        )
        status, body = await send(session, "PUT", sim.url + path, headers)
    assert (status, body["status"]) == (200, "STOPPING")


SIGNATURE = "verify aksk signature fail"
#: tamper -> the reason the 401 gives
TAMPERS = {
    "method": SIGNATURE,
    "path": SIGNATURE,
    "query": SIGNATURE,
    "signed_header": SIGNATURE,
    "body": SIGNATURE,
    "date_too_old": "x-sdk-date outside the allowed clock skew",
    "date_too_new": "x-sdk-date outside the allowed clock skew",
    "wrong_sk": SIGNATURE,
    "unknown_ak": "access key not found",
    "host_unsigned": "host and x-sdk-date must be signed",
    "missing_signed_header": "a signed header is missing",
    "malformed": "malformed Authorization header",
    "signature_hex_changed": SIGNATURE,
}


@pytest.mark.anyio
@pytest.mark.parametrize("tamper", sorted(TAMPERS))
async def test_any_tampered_signed_part_is_refused(tamper: str) -> None:
    """Changing any signed part (method, path, query, header, body, date, key) yields 401 APIGW.0301."""
    async with run_simulator(CONFIG) as sim, aiohttp.ClientSession() as session:
        project_id = sim.inventory.project_ids[0]
        ids = [i for i, _ in sim.inventory.iter_instances(project_id)]
        url = f"{sim.url}/v1/{project_id}/dev-servers/{ids[0]}/stop?force=false"
        method, send_url, body, send_body = "PUT", url, b"", b""
        extra = {"X-Project-Id": project_id}
        now: float | None = None
        ak, sk = AK, SK
        if tamper == "method":
            method = "POST"
        elif tamper == "path":
            send_url = url.replace(ids[0], ids[1])
        elif tamper == "query":
            send_url = url.replace("force=false", "force=true")
        elif tamper == "body":
            body, send_body = b'{"a":1}', b'{"a":2}'
        elif tamper == "date_too_old":
            now = time.time() - 16 * 60
        elif tamper == "date_too_new":
            now = time.time() + 16 * 60
        elif tamper == "wrong_sk":
            sk = SK + "x"
        elif tamper == "unknown_ak":
            ak = "NOSUCHAK"
        headers = signed(url, method, ak=ak, sk=sk, body=body, now=now, extra=extra)
        if tamper == "signed_header":
            headers["X-Project-Id"] = "0" * 32
        elif tamper == "host_unsigned":
            headers["Authorization"] = Signer(AK, SK).authorization(
                method,
                URL(url).raw_path,
                [("force", "false")],
                {k: v for k, v in headers.items() if k != "Host"},
            )  # fmt: skip
        elif tamper == "missing_signed_header":
            del headers["X-Project-Id"]
        elif tamper == "malformed":
            headers["Authorization"] = "SDK-HMAC-SHA256 garbage"
        elif tamper == "signature_hex_changed":
            auth = headers["Authorization"]
            headers["Authorization"] = auth[:-1] + ("0" if auth[-1] != "0" else "1")
        if tamper == "method":
            method = "PUT"  # signed as POST, sent as PUT
        status, answer = await send(session, method, send_url, headers, send_body)
    assert status == 401, tamper
    assert answer == {
        "error_code": "APIGW.0301",
        "error_msg": f"Incorrect IAM authentication information: {TAMPERS[tamper]}",
    }
    assert not sim.instances.overrides
    assert not any(secret in answer["error_msg"] for secret in (*SECRETS, AK, TEMP_AK))


@pytest.mark.anyio
async def test_untampered_request_with_query_and_body_passes() -> None:
    """The same request as the tamper cases, untouched, is accepted: the refusals are about the tampering."""
    async with run_simulator(CONFIG) as sim, aiohttp.ClientSession() as session:
        project_id = sim.inventory.project_ids[0]
        instance_id = next(sim.inventory.iter_instances(project_id))[0]
        url = f"{sim.url}/v1/{project_id}/dev-servers/{instance_id}/stop?force=false"
        headers = signed(url, body=b'{"a":1}', extra={"X-Project-Id": project_id, "User-Agent": "x/1"})
        status, body = await send(session, "PUT", url, headers, b'{"a":1}')
    assert (status, body["status"]) == (200, "STOPPING")


@pytest.mark.anyio
async def test_security_token_is_required_and_signed_for_temporary_credentials() -> None:
    """An AK bound to a security token is refused without it, with a wrong one or unsigned; passes with it."""
    async with run_simulator(CONFIG) as sim, aiohttp.ClientSession() as session:
        project_id = sim.inventory.project_ids[0]
        instance_id = next(sim.inventory.iter_instances(project_id))[0]
        url = f"{sim.url}/v1/{project_id}/dev-servers/{instance_id}"
        results = []
        for extra in ({}, {"X-Security-Token": "wrong"}, {"X-Security-Token": SECURITY_TOKEN}):
            headers = signed(url, "GET", ak=TEMP_AK, sk=TEMP_SK, extra=extra)
            results.append((await send(session, "GET", url, headers))[0])
        unsigned = signed(url, "GET", ak=TEMP_AK, sk=TEMP_SK)
        unsigned["X-Security-Token"] = SECURITY_TOKEN
        results.append((await send(session, "GET", url, unsigned))[0])
    assert results == [401, 401, 200, 401]


@pytest.mark.anyio
async def test_iam_token_accepted_or_refused() -> None:
    """X-Auth-Token is accepted when it is a configured token and refused (401) otherwise or when absent."""
    async with run_simulator(CONFIG) as sim, aiohttp.ClientSession() as session:
        project_id = sim.inventory.project_ids[0]
        instance_id = next(sim.inventory.iter_instances(project_id))[0]
        url = f"{sim.url}/v1/{project_id}/dev-servers/{instance_id}"
        ok = await send(session, "GET", url, {"X-Auth-Token": IAM_TOKEN})
        bad = await send(session, "GET", url, {"X-Auth-Token": "not-" + IAM_TOKEN})
        none = await send(session, "GET", url, {})
    assert ok[0] == 200 and ok[1]["status"] == "RUNNING"
    assert (bad[0], bad[1]["error_code"], none[0]) == (401, "APIGW.0301", 401)
    assert IAM_TOKEN not in bad[1]["error_msg"]


@pytest.mark.anyio
async def test_forbidden_project_is_403_for_an_authenticated_caller() -> None:
    """An authenticated caller gets 403 APIGW.0302 on a forbidden project."""
    async with run_simulator(CONFIG) as sim:
        forbidden = sim.inventory.project_ids[1]
    config = SimulatorConfig(
        inventory=CONFIG.inventory,
        access_keys=CONFIG.access_keys,
        auth_tokens=CONFIG.auth_tokens,
        forbidden_projects=frozenset({forbidden}),
    )
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        instance_id = next(sim.inventory.iter_instances(forbidden))[0]
        url = f"{sim.url}/v1/{forbidden}/dev-servers/{instance_id}/stop"
        status, body = await send(session, "PUT", url, {"X-Auth-Token": IAM_TOKEN})
    assert (status, body["error_code"]) == (403, "APIGW.0302")


def test_access_key_repr_hides_secrets() -> None:
    """The config's repr never shows an SK, security token or IAM token."""
    text = repr(CONFIG)
    assert AK in text
    assert not any(secret in text for secret in SECRETS)
