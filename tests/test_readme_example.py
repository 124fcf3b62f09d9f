"""The Python examples of README.md and docs/runbook.md run as written, against the simulator."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal

from bulkops.simulator import InventorySpec, SimulatorConfig, run_simulator, write_csv

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(doc: Path) -> list[str]:
    """The ```python blocks of a Markdown file."""
    return re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("doc", ["README.md", "docs/runbook.md"])
def test_python_example_runs_as_written(tmp_path: Path, doc: str) -> None:
    """The doc's Python example, saved as a file beside ids.csv, stops every row on the simulator."""
    blocks = python_blocks(ROOT / doc)
    assert len(blocks) == 1, f"{doc} should hold one Python example"
    script = tmp_path / "stop.py"
    script.write_text(blocks[0].replace("https://modelarts.cn-north-4.myhuaweicloud.com", "${ENDPOINT}"))
    spec = InventorySpec(projects=2, instances_per_project=4, status_mix={"RUNNING": 1.0}, seed=4)
    rows = write_csv(spec, tmp_path / "ids.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_SDK_", "BULKOPS_"))}
    config = SimulatorConfig(auth_enabled=False, inventory=spec, seed=4)
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(run_simulator(config)) as sim:
        script.write_text(script.read_text().replace("${ENDPOINT}", sim.url))
        env["BULKOPS_ENDPOINT"] = sim.url
        proc = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
            timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # structlog's unconfigured default also prints the library's info events to stdout: skip those
    printed = [line for line in proc.stdout.splitlines() if re.match(r"\d+ ", line)]
    assert len(printed) == rows and all(" accepted" in line for line in printed), proc.stdout
