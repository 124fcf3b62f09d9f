"""The official Huawei Cloud SDK, pointed at the simulator, works: the strongest proof it speaks the protocol.

The SDK's client is synchronous (requests), so the simulator runs in a background thread with its own event
loop; every wait is bounded. The SDK signs with its own signer (Content-Type, Host, X-Project-Id, X-Sdk-Date)
and adds an unsigned User-Agent; the simulator must verify all of that.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bulkops.cloud.api import DevServerClient, operation_path
from bulkops.cloud.auth import Credentials, auth_headers, sdk_date, signer_for
from bulkops.models import Reply
from bulkops.operations import OPERATIONS
from bulkops.simulator import AccessKey, InventorySpec, Simulator, SimulatorConfig, run_simulator

pytest.importorskip("huaweicloudsdkmodelarts")

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkmodelarts.v1 import (
    ModelArtsClient,
    RebootDevServerRequest,
    ShowDevServerRequest,
    StartDevServerRequest,
    StopDevServerRequest,
)

AK, SK = "SDKORACLEAK00000001", "sdk-oracle-secret-key-0001"

# The SDK's signer calls datetime.utcnow(), deprecated from Python 3.12 on; that warning is the SDK's.
pytestmark = pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")


@contextmanager
def simulator_thread(config: SimulatorConfig, timeout: float = 10.0) -> Iterator[Simulator]:
    """Run a simulator on its own event loop in a daemon thread; stop it and join on exit."""
    ready = threading.Event()
    holder: dict[str, object] = {}
    loop = asyncio.new_event_loop()

    async def main() -> None:
        stop = asyncio.Event()
        holder["stop"] = stop
        async with run_simulator(config) as sim:
            holder["sim"] = sim
            ready.set()
            await stop.wait()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported to the test thread
            holder["error"] = exc
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="simulator", daemon=True)
    thread.start()
    try:
        assert ready.wait(timeout), "simulator did not start"
        if "error" in holder:
            error = holder["error"]
            assert isinstance(error, BaseException)
            raise AssertionError("simulator failed to start") from error
        sim = holder["sim"]
        assert isinstance(sim, Simulator)
        yield sim
    finally:
        stop = holder.get("stop")
        if isinstance(stop, asyncio.Event) and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        assert not thread.is_alive(), "simulator thread did not stop"


def sdk_client(url: str, project_id: str, sk: str = SK) -> ModelArtsClient:
    """The official ModelArts client with AK/SK credentials, aimed at `url`, no retries, short timeouts."""
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = True
    config.timeout = (5, 10)
    config.retry_times = 0
    return (
        ModelArtsClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(AK, sk, project_id))
        .with_endpoints([url])
        .build()
    )


CONFIG = SimulatorConfig(
    inventory=InventorySpec(projects=1, instances_per_project=20, status_mix={"RUNNING": 1.0}, seed=21),
    access_keys=(AccessKey(AK, SK),),
    stop_delay=3600.0,
)


def test_official_sdk_stops_an_instance_and_gets_stopping() -> None:
    """StopDevServer through the SDK succeeds with status STOPPING, and ShowDevServer reads it back."""
    with simulator_thread(CONFIG) as sim:
        project_id = sim.inventory.project_ids[0]
        instance_id = next(sim.inventory.iter_instances(project_id))[0]
        client = sdk_client(sim.url, project_id)
        response = client.stop_dev_server(StopDevServerRequest(id=instance_id))
        shown = client.show_dev_server(ShowDevServerRequest(id=instance_id))
        log = list(sim.request_log)
    assert response.status == "STOPPING" and response.id == instance_id
    assert shown.status == "STOPPING" and shown.flavor
    assert [(r.method, r.http_status, r.applied) for r in log] == [("PUT", 200, True), ("GET", 200, False)]


def test_official_sdk_sees_6308_on_a_second_stop() -> None:
    """A second stop through the SDK raises ClientRequestException with ModelArts.6308, X-Request-Id kept."""
    with simulator_thread(CONFIG) as sim:
        project_id = sim.inventory.project_ids[0]
        instance_id = next(sim.inventory.iter_instances(project_id))[0]
        client = sdk_client(sim.url, project_id)
        client.stop_dev_server(StopDevServerRequest(id=instance_id))
        with pytest.raises(ClientRequestException) as info:
            client.stop_dev_server(StopDevServerRequest(id=instance_id))
    assert info.value.status_code == 400
    assert info.value.error_code in {"ModelArts.6307", "ModelArts.6308"}
    assert info.value.error_code == "ModelArts.6308"
    assert info.value.request_id


def test_official_sdk_with_a_wrong_secret_gets_401() -> None:
    """The SDK signing with a wrong SK is refused with 401 APIGW.0301: verification is not a rubber stamp."""
    with simulator_thread(CONFIG) as sim:
        project_id = sim.inventory.project_ids[0]
        instance_id = next(sim.inventory.iter_instances(project_id))[0]
        client = sdk_client(sim.url, project_id, sk=SK + "-wrong")
        with pytest.raises(ClientRequestException) as info:
            client.stop_dev_server(StopDevServerRequest(id=instance_id))
    assert (info.value.status_code, info.value.error_code) == (401, "APIGW.0301")
    assert not sim.instances.overrides


# -- start and reboot (issue 16): the same oracle for the other two operations ----------------------------

STOPPED_FLEET = SimulatorConfig(
    inventory=InventorySpec(projects=1, instances_per_project=4, status_mix={"STOPPED": 1.0}, seed=22),
    access_keys=(AccessKey(AK, SK),),
    stop_delay=3600.0,
)


def _first(sim: Simulator) -> tuple[str, str]:
    project_id = sim.inventory.project_ids[0]
    return project_id, next(sim.inventory.iter_instances(project_id))[0]


def test_official_sdk_starts_a_stopped_instance_and_gets_starting() -> None:
    """StartDevServer through the SDK succeeds with status STARTING; a second start raises ModelArts.6306."""
    with simulator_thread(STOPPED_FLEET) as sim:
        project_id, instance_id = _first(sim)
        client = sdk_client(sim.url, project_id)
        response = client.start_dev_server(StartDevServerRequest(id=instance_id))
        shown = client.show_dev_server(ShowDevServerRequest(id=instance_id))
        with pytest.raises(ClientRequestException) as info:
            client.start_dev_server(StartDevServerRequest(id=instance_id))
    assert response.status == "STARTING" and response.id == instance_id and response.flavor
    assert shown.status == "STARTING"
    assert (info.value.status_code, info.value.error_code) == (400, "ModelArts.6306")
    assert info.value.request_id


def test_official_sdk_start_of_a_running_instance_gets_6305() -> None:
    """StartDevServer on a RUNNING instance raises ModelArts.6305 ("already running"), nothing changed."""
    with simulator_thread(CONFIG) as sim:
        project_id, instance_id = _first(sim)
        with pytest.raises(ClientRequestException) as info:
            sdk_client(sim.url, project_id).start_dev_server(StartDevServerRequest(id=instance_id))
    assert (info.value.status_code, info.value.error_code) == (400, "ModelArts.6305")
    assert not sim.instances.overrides


def test_official_sdk_reboots_a_running_instance_and_not_a_stopped_one() -> None:
    """RebootDevServer via the SDK gets REBOOTING for a RUNNING instance; a STOPPED one is refused 6307."""
    with simulator_thread(CONFIG) as sim:
        project_id, instance_id = _first(sim)
        response = sdk_client(sim.url, project_id).reboot_dev_server(RebootDevServerRequest(id=instance_id))
    assert response.status == "REBOOTING" and response.id == instance_id
    with simulator_thread(STOPPED_FLEET) as sim:
        project_id, instance_id = _first(sim)
        with pytest.raises(ClientRequestException) as info:
            sdk_client(sim.url, project_id).reboot_dev_server(RebootDevServerRequest(id=instance_id))
    assert (info.value.status_code, info.value.error_code) == (400, "ModelArts.6307")


_SDK_REQUESTS = {
    "stop": (ModelArtsClient._stop_dev_server_http_info, StopDevServerRequest),
    "start": (ModelArtsClient._start_dev_server_http_info, StartDevServerRequest),
    "reboot": (ModelArtsClient._reboot_dev_server_http_info, RebootDevServerRequest),
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_each_operation_sends_the_sdk_method_and_path_and_signs_like_it(name: str) -> None:
    """Every operation's method and path are the SDK's for the same call, and bulkops' signed headers for
    it equal the SDK's credentials' signature of that request."""
    op = OPERATIONS[name]
    project_id, instance_id = "0123456789abcdef0123456789abcdef", "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    http_info_of, request_type = _SDK_REQUESTS[name]
    info = http_info_of(request_type(id=instance_id))
    sdk_path = info["resource_path"].format(project_id=project_id, id=instance_id)
    assert (op.method, operation_path(op, project_id, instance_id)) == (info["method"], sdk_path)
    now = 1_772_366_400.0
    credentials = Credentials(ak=AK, sk=SK)
    ours = auth_headers(
        credentials, signer_for(credentials), method=op.method, host="h.example", path=sdk_path,
        project_id=project_id, now=now,
    )  # fmt: skip
    request = SdkRequest(
        method=info["method"], schema="https", host="h.example", resource_path=sdk_path, query_params=[],
        header_params={"X-Sdk-Date": sdk_date(now)},
    )  # fmt: skip
    BasicCredentials(AK, SK, project_id).sign_request(request)
    assert ours == request.header_params


@pytest.mark.parametrize(
    ("name", "fleet", "status"), [("start", "STOPPED", "STARTING"), ("reboot", "RUNNING", "REBOOTING")]
)
def test_bulkops_client_acts_against_the_signing_simulator(name: str, fleet: str, status: str) -> None:
    """bulkops' own client, signing with AK/SK, gets the 200 and status the SDK gets for each operation."""
    config = SimulatorConfig(
        inventory=InventorySpec(projects=1, instances_per_project=2, status_mix={fleet: 1.0}, seed=23),
        access_keys=(AccessKey(AK, SK),),
        stop_delay=3600.0,
    )

    async def act(url: str, project_id: str, instance_id: str) -> Reply:
        async with DevServerClient(url, Credentials(ak=AK, sk=SK)) as client:
            return await client.act(OPERATIONS[name], project_id, instance_id)

    with simulator_thread(config) as sim:
        project_id, instance_id = _first(sim)
        reply = asyncio.run(act(sim.url, project_id, instance_id))
    assert (reply.http_status, reply.status) == (200, status)
