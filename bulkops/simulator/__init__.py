"""A local stand-in for the ModelArts DevServer API and its gateway, failures included.

It is the demo's default target, the integration test bed and the benchmarks' load target. It imports only
bulkops.cloud.auth (to verify signatures) and bulkops.models, besides aiohttp and the standard library.

    async with run_simulator(SimulatorConfig(auth_enabled=False)) as sim:
        project = sim.inventory.project_ids[0]
        ...  # PUT f"{sim.url}/v1/{project}/dev-servers/{id}/stop"

Modules, one concept each: config (the knobs), inventory (the fleet, generated or loaded, and the input
CSV writer), state (the lazy state machine), verify (gateway authentication), throttle (token buckets),
faults (latency and fault draws), answers (error catalogue and bodies), stats (counters and request log),
app (the aiohttp server), command (the `bulkops simulate` click command).
"""

from bulkops.simulator.app import SIMULATOR, Simulator, build_app, run_simulator
from bulkops.simulator.config import AccessKey, FaultShares, Limit, SimulatorConfig
from bulkops.simulator.faults import KINDS as FAULT_KINDS
from bulkops.simulator.inputcsv import iter_csv_rows, write_csv
from bulkops.simulator.inventory import (
    GeneratedInventory,
    Inventory,
    InventorySpec,
    LoadedInventory,
    load_inventory,
)
from bulkops.simulator.state import InstanceStore, Override
from bulkops.simulator.stats import ProjectStats, RequestRecord, Stats

__all__ = [
    "FAULT_KINDS",
    "SIMULATOR",
    "AccessKey",
    "FaultShares",
    "GeneratedInventory",
    "InstanceStore",
    "Inventory",
    "InventorySpec",
    "Limit",
    "LoadedInventory",
    "Override",
    "ProjectStats",
    "RequestRecord",
    "Simulator",
    "SimulatorConfig",
    "Stats",
    "build_app",
    "iter_csv_rows",
    "load_inventory",
    "run_simulator",
    "write_csv",
]
