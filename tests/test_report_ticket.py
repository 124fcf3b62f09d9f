"""`bulkops report summarize --format markdown|json|text`: a report summed up for a change ticket, and the
sidecar facts it rests on (the command line, the run times)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _reliability import CLEAN_ENV
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner
from test_report_cli import sample_report

from bulkops.cli.main import main
from bulkops.io.reportmeta import command_line
from bulkops.simulator import FaultShares, InventorySpec, Simulator, SimulatorConfig, run_simulator, write_csv

FLEET = InventorySpec(
    projects=2, instances_per_project=6, status_mix={"RUNNING": 1.0}, unknown_share=0.2, seed=4
)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """Two projects of six RUNNING instances; a fifth of the input's ids are unknown; 30 % of answers 503."""
    config = SimulatorConfig(
        auth_enabled=False, inventory=FLEET, stop_delay=3600.0, faults=FaultShares(http_503=0.3), seed=2
    )
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(run_simulator(config)) as s:
        yield s


def bulkops(*args: str, monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    """`bulkops ARGS` in-process, with sys.argv as a shell would set it; (exit code, stdout, stderr)."""
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "argv", ["bulkops", *args])
    result = CliRunner().invoke(main, list(args), env=CLEAN_ENV, terminal_width=100)
    return result.exit_code, result.stdout, result.stderr


def stopped(sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Path:
    """Run `bulkops stop fleet.csv --report run.jsonl` against the simulator (twice with --resume)."""
    fleet = tmp_path / "fleet.csv"
    if not fleet.exists():
        write_csv(FLEET, fleet)
    report = tmp_path / "run.jsonl"
    args = ("stop", str(fleet), "--endpoint", sim.url, "--report", str(report), "--yes", "-q")
    code, _, err = bulkops(*args, "--max-attempts", "1", *extra, monkeypatch=monkeypatch)
    assert code in (0, 1), err
    return report


def test_markdown_holds_command_times_sha256_counts_and_each_failure(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ticket names the command line, start and end, the report's path and SHA-256, counts per outcome
    and per project, and every row that did not succeed with its error code and message."""
    report = stopped(sim, tmp_path, monkeypatch)
    code, out, err = bulkops("report", "summarize", str(report), "--format", "markdown")
    assert code == 0, err
    records = [json.loads(line) for line in report.read_text().splitlines()]
    meta = json.loads(Path(f"{report}.meta.json").read_text())
    sha = hashlib.sha256(report.read_bytes()).hexdigest()
    assert f"| Command | `bulkops stop {tmp_path}/fleet.csv --endpoint {sim.url} --report {report}" in out
    assert f"| Report SHA-256 | `{sha}` |" in out
    assert (
        f"| Started | {meta['runs'][0]['started']} |" in out
        and f"| Ended | {meta['runs'][0]['ended']} |" in out
    )
    assert meta["runs"][0]["started"] <= meta["runs"][0]["ended"]
    bad = [r for r in records if r["outcome"] not in ("accepted", "already_stopped", "stopped")]
    assert bad and f"#### Rows that did not succeed ({len(bad)})" in out
    for r in bad:
        assert (
            f"| {r['line']} | `{r['project_id']}` | `{r['id']}` | {r['outcome']} | `{r['error_code']}` |"
            in out
        )
    for project in {r["project_id"] for r in records}:
        total = sum(1 for r in records if r["project_id"] == project)
        assert any(
            line.startswith(f"| `{project}` |") and line.endswith(f"| {total} |") for line in out.splitlines()
        )


def test_a_resumed_report_lists_both_runs(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a --resume, the sidecar holds two runs; the ticket counts them and shows both command lines."""
    report = stopped(sim, tmp_path, monkeypatch)
    stopped(sim, tmp_path, monkeypatch, "--resume")
    runs = json.loads(Path(f"{report}.meta.json").read_text())["runs"]
    assert len(runs) == 2 and "--resume" in runs[1]["command"] and "--resume" not in runs[0]["command"]
    _, out, _ = bulkops("report", "summarize", str(report), "--format", "markdown")
    assert "| Runs | 2 (resumed 1 times) |" in out
    assert f"| Ended | {runs[1]['ended']} |" in out and out.count("--resume") == 1  # the second run's command


def test_json_has_the_ticket_fields_and_json_flag_is_the_same(tmp_path: Path) -> None:
    """--format json and --json print the same object: the digest's figures plus sha256, size, the
    failures (at most --failures N of them) and how many were left out."""
    report = sample_report(tmp_path / "r.jsonl")
    _, out, _ = bulkops("report", "summarize", str(report), "--format", "json", "--failures", "1")
    _, same, _ = bulkops("report", "summarize", str(report), "--json", "--failures", "1")
    data = json.loads(out)
    assert json.loads(same) == data
    assert data["sha256"] == hashlib.sha256(report.read_bytes()).hexdigest() and data["size"] > 0
    assert [f["line"] for f in data["failures"]] == [3]
    assert data["failures_unlisted"] == data["unsuccessful"] - 1
    assert data["command"] is None and data["ended_from"] == "last record"
    assert data["per_project"] and data["outcomes"]


def test_text_is_todays_output(tmp_path: Path) -> None:
    """--format text prints exactly what summarize printed before --format existed."""
    report = sample_report(tmp_path / "r.jsonl")
    _, default, _ = bulkops("report", "summarize", str(report))
    _, text, _ = bulkops("report", "summarize", str(report), "--format", "text")
    assert text == default and text.startswith(f"{report}: ") and "| " not in text


def test_markdown_without_a_sidecar_says_what_it_lacks_and_cuts_long_lists(tmp_path: Path) -> None:
    """A report the Python API wrote (no sidecar): no command, the end taken from the last record; with
    --failures 1 the rest are counted and `bulkops report failed` is named. Server text cannot break the
    table (a `|` is escaped)."""
    report = sample_report(tmp_path / "r.jsonl")
    with report.open("a") as fh:
        bad = {"line": 99, "project_id": "c" * 32, "id": "00000000-0000-4000-8000-000000000099"}
        bad |= {"outcome": "failed", "error_code": "X", "error_msg": "a | b\nc", "attempts": 1}
        fh.write(json.dumps(bad) + "\n")
    _, out, _ = bulkops("report", "summarize", str(report), "--format", "markdown", "--failures", "100")
    assert "| Command | - |" in out and "(last record) |" in out
    assert "| a \\| b c |" in out
    _, out, _ = bulkops("report", "summarize", str(report), "--format", "markdown", "--failures", "1")
    assert f"more rows not listed here (`bulkops report failed {report}` lists)." in out


def test_a_bad_report_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A missing report with --format markdown: exit 2, one `bulkops: error:` line."""
    code, out, err = bulkops("report", "summarize", str(tmp_path / "nope.jsonl"), "--format", "markdown")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"bulkops: error: {tmp_path}/nope.jsonl: no such file"]


def test_the_command_line_masks_url_passwords_and_secret_values() -> None:
    """`--redis redis://user:pw@host` and `?password=` are masked in the recorded command; the rest is
    shell-quoted as typed."""
    line = command_line(["stop", "my ids.csv", "--redis", "redis://me:hunter2@h:6379/0?password=x&db=1"])
    assert line == "bulkops stop 'my ids.csv' --redis 'redis://me:***@h:6379/0?password=***&db=1'"
    assert "hunter2" not in command_line(["--redis", "rediss://hunter2@h"])


def test_a_real_stop_process_records_its_own_command_line(sim: Simulator, tmp_path: Path) -> None:
    """As a subprocess (argv as the shell gives it), the sidecar's command is what was typed."""
    fleet = tmp_path / "fleet.csv"
    write_csv(FLEET, fleet)
    env = {**os.environ, **CLEAN_ENV}
    args = ["stop", "fleet.csv", "--endpoint", sim.url, "--report", "r.jsonl", "--yes", "-q"]
    proc = subprocess.run(
        [sys.executable, "-m", "bulkops", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode in (0, 1), proc.stderr
    meta = json.loads((tmp_path / "r.jsonl.meta.json").read_text())
    assert meta["command"] == meta["runs"][0]["command"] == "bulkops " + " ".join(args)
