"""Issue 16 on the command line: `bulkops start` and `bulkops reboot` take every option of `stop`, and
`--from-report` in place of INPUT; the prompt, the plan and the summary name the operation."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _reliability import CLEAN_ENV
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner

from bulkops.cli import command_stop
from bulkops.cli.main import main
from bulkops.io.fromreport import acted_rows
from bulkops.io.report import ReportWriter
from bulkops.models import Outcome, Result
from bulkops.simulator import InventorySpec, Simulator, SimulatorConfig, run_simulator, write_csv

P = "0123456789abcdef0123456789abcdef"


def iid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012x}"


def bulkops(*args: str) -> tuple[int, str]:
    """`bulkops ARGS` in-process, without credentials in the environment; (exit code, stderr)."""
    result = CliRunner().invoke(main, list(args), env=CLEAN_ENV, terminal_width=100)
    return result.exit_code, result.stderr


def write_report(path: Path, results: list[Result]) -> Path:
    writer = ReportWriter.open(str(path), append=False)
    writer.write_many(results)
    writer.close()
    return path


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A quiet simulator (no auth) with 1 project of 6 STOPPED instances on 127.0.0.1."""
    config = SimulatorConfig(
        auth_enabled=False,
        inventory=InventorySpec(projects=1, instances_per_project=6, status_mix={"STOPPED": 1.0}, seed=3),
    )
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(run_simulator(config)) as s:
        yield s


def test_start_and_reboot_take_every_option_of_stop() -> None:
    """The three commands have the same options (one shared list); --wait says what each polls for."""
    names = {name: {p.name for p in main.commands[name].params} for name in ("stop", "start", "reboot")}
    assert names["stop"] == names["start"] == names["reboot"]
    assert {"from_report", "wait", "resume", "dry_run", "rate", "report_path"} <= names["stop"]
    helps = {
        name: " ".join(CliRunner().invoke(main, [name, "--help"], terminal_width=100).output.split())
        for name in names
    }
    assert "until STOPPED or STOP_FAILED" in helps["stop"]
    assert "until RUNNING or START_FAILED" in helps["start"]
    assert "until RUNNING (after REBOOTING) or REBOOT_FAILED" in helps["reboot"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["start"], "Missing argument 'INPUT' (or --from-report REPORT)"),
        (["reboot", "in.csv", "--from-report", "r.jsonl"], "give INPUT or --from-report REPORT, not both"),
        (
            ["start", "--from-report", "no-such-report.jsonl", "--endpoint", "http://127.0.0.1:9"],
            "no such file",
        ),
    ],
)
def test_input_mistakes_are_one_error_line(args: list[str], says: str) -> None:
    """No INPUT, INPUT and --from-report together, or a missing report: one `bulkops: error:` line, exit 2."""
    code, err = bulkops(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bulkops: error: ") and says in lines[0], err


def test_dry_run_plan_names_the_operation(sim: Simulator, tmp_path: Path) -> None:
    """`bulkops reboot --dry-run` plans rows "to reboot" and sends nothing."""
    src = tmp_path / "in.csv"
    write_csv(sim.inventory, src)
    code, err = bulkops("reboot", str(src), "--dry-run", "--endpoint", sim.url)
    assert code == 0, err
    assert "bulkops dry run: 6 rows to reboot in 1 project" in err
    assert sim.stats.as_dict()["totals"]["requests"] == 0


def test_confirmation_and_summary_name_the_operation(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`start --from-report` asks "Start N rows of the report R" (N: the rows taken), and its summary is
    titled `bulkops start`; the rows it starts end `accepted`."""
    p = sim.inventory.project_ids[0]
    ids = [i for i, _ in sim.inventory.iter_instances(p)]
    evening = write_report(
        tmp_path / "evening.jsonl",
        [
            Result(1, p, ids[0], Outcome.ACCEPTED, attempts=1),
            Result(2, p, ids[1], Outcome.ALREADY_STOPPED, error_code="ModelArts.6307", attempts=1),
            Result(3, p, ids[2], Outcome.STOPPED, attempts=2),
        ],
    )
    monkeypatch.setattr(command_stop, "_prompt_channel", lambda _p: (io.StringIO("y\n"), sys.stderr))
    morning = tmp_path / "morning.jsonl"
    code, err = bulkops(
        "start",
        "--from-report",
        str(evening),
        "--endpoint",
        sim.url,
        "--report",
        str(morning),
        "--no-progress",
        "--log-format",
        "console",
    )
    assert code == 0, err
    assert f"Start 2 rows of the report {evening} against {sim.url}?" in err
    assert "bulkops start: 2 rows" in err and "accepted 2" in err
    assert {sim.instances.status(p, i)[0] for i in (ids[0], ids[2])} == {"STARTING"}  # type: ignore[index]
    assert sim.instances.status(p, ids[1])[0] == "STOPPED"  # type: ignore[index]


def test_report_summarize_abbreviates_already_running(tmp_path: Path) -> None:
    """`report summarize` of a start's report shows already_running as "already", and says so."""
    report = write_report(
        tmp_path / "r.jsonl",
        [Result(1, P, iid(1), Outcome.ALREADY_RUNNING, attempts=1), Result(2, P, iid(2), Outcome.RUNNING)],
    )
    result = CliRunner().invoke(main, ["report", "summarize", str(report)], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "(already = already_running)" in result.output and "running" in result.output


def test_demo_ends_with_the_morning_start_from_the_stop_report(tmp_path: Path) -> None:
    """`bulkops demo` stops, summarizes, then starts from the stop's report: the start's report holds exactly
    the rows the stop changed, each started."""
    result = CliRunner().invoke(
        main, ["demo", "--dir", str(tmp_path), "--projects", "1", "--instances", "8"], env=CLEAN_ENV
    )
    assert result.exit_code == 0, result.stderr
    assert "bulkops report summarize" in result.stderr and "bulkops start --from-report" in result.stderr
    stop_rows = {(t.project_id, t.id) for t in acted_rows(str(tmp_path / "demo-report.jsonl"))}
    started = [json.loads(line) for line in (tmp_path / "demo-start-report.jsonl").read_text().splitlines()]
    assert stop_rows and {(r["project_id"], r["id"]) for r in started} == stop_rows
    assert {r["outcome"] for r in started} <= {"accepted", "already_running"}
