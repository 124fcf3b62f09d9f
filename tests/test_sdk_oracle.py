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

from bulkops.simulator import AccessKey, InventorySpec, Simulator, SimulatorConfig, run_simulator

pytest.importorskip("huaweicloudsdkmodelarts")

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkmodelarts.v1 import (
    ModelArtsClient,
    ShowDevServerRequest,
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
