"""The listing, with the official SDK as the oracle: the SDK lists the simulator's fleet and gets the real
shapes (paging, owner, sort), and bulkops' page request is the SDK's (path, query and its order, signature).

The simulator runs in a background thread (test_sdk_oracle.simulator_thread), the SDK's client is
synchronous. bulkops' request and the SDK's are compared on a capture server on 127.0.0.1 that answers
every request with an empty page and keeps what it got.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiohttp import web

pytest.importorskip("huaweicloudsdkmodelarts")

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer as SdkSigner
from huaweicloudsdkmodelarts.v1 import ListDevServersRequest, StopDevServerRequest
from test_sdk_oracle import AK, SK, sdk_client, simulator_thread
from test_sdk_oracle import CONFIG as STOP_CONFIG

from bulkops.cloud.api import DevServerClient
from bulkops.cloud.auth import Credentials
from bulkops.cloud.listing import Page, list_query
from bulkops.simulator import InventorySpec, Limit, SimulatorConfig
from bulkops.simulator.listing import OWNERS, owner_of

pytestmark = pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")

#: The stop oracle's simulator, with 23 instances: pages of 10 end in a short one.
CONFIG = dataclasses.replace(
    STOP_CONFIG,
    inventory=InventorySpec(projects=1, instances_per_project=23, status_mix={"RUNNING": 1.0}, seed=5),
)


def test_official_sdk_pages_through_the_fleet() -> None:
    """ListDevServers with limit 10: pages of 10, 10, 3 with current/pages/size/total, every id once."""
    with simulator_thread(CONFIG) as sim:
        project_id = sim.inventory.project_ids[0]
        client = sdk_client(sim.url, project_id)
        pages = [client.list_dev_servers(ListDevServersRequest(limit=10, offset=o)) for o in (0, 10, 20)]
        fleet = {i for i, _ in sim.inventory.iter_instances(project_id)}
    assert [(p.current, p.pages, p.size, p.total, len(p.data)) for p in pages] == [
        (1, 3, 10, 23, 10),
        (2, 3, 10, 23, 10),
        (3, 3, 10, 23, 3),
    ]
    listed = [s.id for p in pages for s in p.data]
    assert sorted(listed) == sorted(fleet)
    first = pages[0].data[0]
    assert first.status == "RUNNING" and first.name and first.flavor and first.create_at
    created = [s.create_at for p in pages for s in p.data]
    assert created == sorted(created)


def test_official_sdk_filters_by_owner_and_sorts_by_update_time() -> None:
    """owner keeps that user's instances only; updateTime DESC puts the instance just stopped first."""
    with simulator_thread(CONFIG) as sim:
        project_id = sim.inventory.project_ids[0]
        client = sdk_client(sim.url, project_id)
        mine = client.list_dev_servers(ListDevServersRequest(owner=OWNERS[1], limit=100))
        victim = next(sim.inventory.iter_instances(project_id))[0]
        client.stop_dev_server(StopDevServerRequest(id=victim))
        latest = client.list_dev_servers(
            ListDevServersRequest(sort_key="updateTime", sort_dir="DESC", limit=2)
        )
    assert mine.total == len(mine.data) > 0
    assert {owner_of(s.id) for s in mine.data} == {OWNERS[1]}
    assert latest.data[0].id == victim and latest.data[0].status == "STOPPING"


def test_the_listing_is_throttled_like_the_gateway() -> None:
    """A project limit of 2/s: the third listing in a row is a 429 APIG.0308 the SDK raises."""
    config = SimulatorConfig(
        inventory=CONFIG.inventory, access_keys=CONFIG.access_keys, project_limit=Limit(2)
    )
    with simulator_thread(config) as sim:
        project_id = sim.inventory.project_ids[0]
        client = sdk_client(sim.url, project_id)
        client.list_dev_servers(ListDevServersRequest(limit=1))
        client.list_dev_servers(ListDevServersRequest(limit=1))
        with pytest.raises(ClientRequestException) as info:
            client.list_dev_servers(ListDevServersRequest(limit=1))
        answers = [(r.http_status, r.error_code) for r in sim.request_log]
    assert info.value.status_code == 429  # the SDK's own HTTP layer retried it, then gave up
    assert answers[:3] == [(200, None), (200, None), (429, "APIG.0308")]


def test_a_bad_limit_is_a_400_the_sdk_reports() -> None:
    """limit 5000 (above the SDK's 1024) is refused with 400 and an error code, not served."""
    with simulator_thread(CONFIG) as sim:
        client = sdk_client(sim.url, sim.inventory.project_ids[0])
        with pytest.raises(ClientRequestException) as info:
            client.list_dev_servers(ListDevServersRequest(limit=5000))
    assert info.value.status_code == 400 and info.value.error_code == "ModelArts.0101"


@contextmanager
def capture_thread() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A server on 127.0.0.1 that answers every request with an empty page and records it."""
    seen: list[dict[str, Any]] = []
    ready = threading.Event()
    holder: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def handle(request: web.Request) -> web.Response:
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": list(request.query.items()),
                "headers": dict(request.headers),
            }
        )
        return web.json_response({"current": 1, "data": [], "pages": 0, "size": 10, "total": 0})

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        holder["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        holder["stop"] = stop = asyncio.Event()
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        yield holder["url"], seen
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(10)
        loop.close()


async def _bulkops_page(url: str, project_id: str, query: tuple[tuple[str, str], ...]) -> Any:
    async with DevServerClient(url, Credentials(ak=AK, sk=SK)) as client:
        return await client.list_page(project_id, query)


def test_bulkops_page_request_is_the_sdks() -> None:
    """Same method, path and query pairs (in the SDK's wire order) as ListDevServers; our signature is the
    one the SDK's signer makes for the request we sent."""
    project_id = "0123456789abcdef0123456789abcdef"
    owner = OWNERS[0]
    with capture_thread() as (url, seen):
        sdk_client(url, project_id).list_dev_servers(
            ListDevServersRequest(owner=owner, sort_dir="ASC", sort_key="createTime", limit=100, offset=200)
        )
        query = list_query(limit=100, offset=200, owner=owner, sort_key="createTime", sort_dir="ASC")
        reply = asyncio.run(_bulkops_page(url, project_id, query))
    sdk, ours = seen
    assert isinstance(reply, Page) and reply.total == 0
    assert (
        (ours["method"], ours["path"])
        == (sdk["method"], sdk["path"])
        == ("GET", f"/v1/{project_id}/dev-servers")
    )
    assert (
        ours["query"]
        == sdk["query"]
        == [
            ("limit", "100"),
            ("offset", "200"),
            ("owner", owner),
            ("sort_dir", "ASC"),
            ("sort_key", "createTime"),
        ]
    )
    headers = ours["headers"]
    signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    request = SdkRequest(
        method="GET",
        schema="http",
        host=headers["Host"],
        resource_path=ours["path"],
        query_params=ours["query"],
        header_params={k: v for k, v in headers.items() if k.lower() in signed},
    )
    SdkSigner(BasicCredentials(AK, SK)).sign(request)
    assert request.header_params["Authorization"] == headers["Authorization"]
    assert "x-project-id" in signed and "x-sdk-date" in signed
