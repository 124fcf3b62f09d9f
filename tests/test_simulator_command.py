"""`bulkops simulate`: every knob explained in --help, the CSV written, a real subprocess serving its URL."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from bulkops.simulator.command import simulate

KNOBS = [
    "--host", "--port", "--seed", "--projects", "--instances-per-project", "--status-mix", "--inventory",
    "--unknown-share", "--write-csv", "--csv-order", "--csv-only", "--not-found-404-share", "--stop-delay",
    "--stop-failed-share", "--latency", "--jitter", "--fail-500", "--fail-502", "--fail-503", "--fail-504",
    "--reset-share", "--hang-share", "--hang-seconds", "--applied-then-503-share", "--fault-project",
    "--rate-limit", "--project-rate-limit", "--credential-rate-limit", "--retry-after", "--no-auth",
    "--max-clock-skew", "--forbidden-project",
]  # fmt: skip


def test_help_explains_every_knob() -> None:
    """--help lists every knob, the credential environment variables and the fixed local host."""
    result = CliRunner().invoke(simulate, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    for knob in KNOBS:
        assert re.search(rf"^\s+{re.escape(knob)}\b.*\S", result.output, re.M), knob
    for word in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "127.0.0.1", "APIG.0308", "/_sim/stats"):
        assert word in result.output


def test_csv_only_writes_the_matching_input(tmp_path: Path) -> None:
    """--write-csv with --csv-only writes the fleet's input file (unknown ids included) and exits 0."""
    out = tmp_path / "targets.csv"
    result = CliRunner().invoke(
        simulate,
        [
            "--no-auth",
            "--projects",
            "2",
            "--instances-per-project",
            "30",
            "--unknown-share",
            "0.25",
            "--write-csv",
            str(out),
            "--csv-only",
            "--csv-order",
            "shuffled",
        ],
    )
    assert result.exit_code == 0, result.output
    with out.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 80 and set(rows[0]) == {"project_id", "id"}


def test_auth_without_credentials_is_a_usage_error() -> None:
    """Without AK/SK or a token in the environment and without --no-auth, the command refuses to start."""
    env = {k: "" for k in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "BULKOPS_AUTH_TOKEN")}
    result = CliRunner().invoke(simulate, ["--port", "0"], env=env)
    assert result.exit_code == 2
    assert "--no-auth" in result.output


def test_bad_knob_values_are_usage_errors() -> None:
    """Nonsense limits and fault shares adding up past 1 exit 2 with a message."""
    runner = CliRunner()
    assert runner.invoke(simulate, ["--no-auth", "--rate-limit", "fast"]).exit_code == 2
    result = runner.invoke(simulate, ["--no-auth", "--fail-500", "0.7", "--fail-503", "0.7"])
    assert result.exit_code == 2 and "more than 1" in result.output


def test_subprocess_prints_its_url_and_serves(tmp_path: Path) -> None:
    """Started as a subprocess, it prints one URL line, serves the API and stats, and exits on SIGTERM."""
    env = {**os.environ, "HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "", "BULKOPS_AUTH_TOKEN": ""}
    code = "from bulkops.simulator.command import simulate; simulate()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--no-auth", "--port", "0", "--projects", "1", "--seed", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"bulkops simulator listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        url = match[1]
        with urllib.request.urlopen(f"{url}/_sim/stats", timeout=10) as resp:
            assert resp.headers["X-Request-Id"]
            assert json.load(resp)["totals"]["requests"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
