"""examples/runbook_stop.py, the runbook's Python example, works as documented against the simulator."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from anyio.from_thread import start_blocking_portal

from bulkops.simulator import InventorySpec, SimulatorConfig, run_simulator, write_csv

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "runbook_stop.py"


def test_runbook_example_stops_reports_and_lists_retries(tmp_path: Path) -> None:
    """The example stops every row through the public API, writes one record each and the retry CSV."""
    spec = InventorySpec(
        projects=2,
        instances_per_project=20,
        status_mix={"RUNNING": 0.8, "ERROR": 0.2},
        unknown_share=0.1,
        seed=9,
    )
    config = SimulatorConfig(auth_enabled=False, inventory=spec, seed=9)
    src = tmp_path / "ids.csv"
    rows = write_csv(spec, src)
    report, retry = tmp_path / "r.jsonl", tmp_path / "retry.csv"
    env = {**os.environ, "HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "", "BULKOPS_AUTH_TOKEN": ""}
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(run_simulator(config)) as sim:
        env["BULKOPS_ENDPOINT"] = sim.url
        proc = subprocess.run(
            [sys.executable, str(EXAMPLE), str(src), "--report", str(report), "--retry", str(retry)],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # instances in ERROR and unknown ids do not succeed
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(records) == rows
    failed = {(r["project_id"], r["id"]) for r in records if r["outcome"] == "failed"}
    assert failed and "failed" in proc.stdout and "not_found" in proc.stdout
    with retry.open(newline="") as fh:
        listed = {(row["project_id"], row["id"]) for row in csv.DictReader(fh)}
    assert listed == failed
