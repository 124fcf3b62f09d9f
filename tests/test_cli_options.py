"""`bulkops stop` options as a user types them: --wait, --dry-run, --rates-file, --region, env vars in --help.

The simulator runs on 127.0.0.1 in a background event loop (an anyio blocking portal), so that the command
runs in the test's main thread exactly as on the command line (its own event loop, signal handlers).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from _reliability import CLEAN_ENV
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner

from bulkops.cli.main import main
from bulkops.cli.stopflags import build_options, resolve_endpoint
from bulkops.cloud.regions import ENDPOINTS
from bulkops.options import RateLimit
from bulkops.simulator import InventorySpec, Simulator, SimulatorConfig, run_simulator, write_csv

NO_CREDENTIALS = CLEAN_ENV
P_A = "a" * 32
P_B = "b" * 32
LOCAL = "http://127.0.0.1:9"  # a loopback endpoint: no credentials needed, nothing listens


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A quiet simulator (no auth, RUNNING instances, STOPPED half a second after a stop) on 127.0.0.1."""
    config = SimulatorConfig(
        auth_enabled=False,
        stop_delay=0.5,
        inventory=InventorySpec(projects=2, instances_per_project=6, status_mix={"RUNNING": 1.0}, seed=3),
    )
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(run_simulator(config)) as s:
        yield s


def fleet_csv(sim: Simulator, path: Path) -> Path:
    """The simulator's fleet as an input CSV."""
    write_csv(sim.config.inventory, path)
    return path


def stop(*args: str) -> tuple[int, str, str]:
    """Run `bulkops stop ARGS` in-process; (exit code, stdout, stderr)."""
    result = CliRunner().invoke(main, ["stop", *args], env=NO_CREDENTIALS, terminal_width=100)
    return result.exit_code, result.stdout, result.stderr


def records(path: Path) -> list[dict[str, object]]:
    """The report's records."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_wait_reports_stopped_once_the_instances_reach_stopped(sim: Simulator, tmp_path: Path) -> None:
    """With --wait, every accepted stop is polled until STOPPED and reported `stopped` (exit 0)."""
    report = tmp_path / "r.jsonl"
    code, _, err = stop(
        str(fleet_csv(sim, tmp_path / "in.csv")),
        "--endpoint", sim.url, "--wait", "--wait-timeout", "20", "--poll-interval", "0.2",
        "--yes", "--report", str(report),
    )  # fmt: skip
    assert code == 0, err
    recs = records(report)
    assert len(recs) == 12
    assert {r["outcome"] for r in recs} == {"stopped"}
    assert {r["status"] for r in recs} == {"STOPPED"}
    methods = {r.method for r in sim.request_log}
    assert methods == {"PUT", "GET"}


def test_dry_run_prints_the_plan_and_sends_nothing(sim: Simulator, tmp_path: Path) -> None:
    """--dry-run on valid rows prints rows per project and the implied duration, exits 0, sends nothing."""
    code, out, err = stop(
        str(fleet_csv(sim, tmp_path / "in.csv")), "--endpoint", sim.url, "--dry-run", "--rate", "2"
    )
    assert code == 0, err
    assert "12 rows to stop in 2 projects, 0 invalid" in err
    for project in sim.inventory.project_ids:
        assert f"{project}: 6 rows at 2/s (burst 2)" in err
    assert "implied duration: at least 2.0s" in err
    assert out == ""
    assert len(sim.request_log) == 0 and sim.stats.totals().requests == 0
    assert not list(tmp_path.glob("*.jsonl"))


def test_dry_run_with_invalid_rows_exits_1_and_names_them(sim: Simulator, tmp_path: Path) -> None:
    """--dry-run with bad rows lists each with its line and reason, exits 1, and still sends nothing."""
    src = fleet_csv(sim, tmp_path / "in.csv")
    with src.open("a") as fh:
        fh.write(f"{P_A},NOT-AN-ID\n../etc,62383738-e52a-450a-9f84-f9e705402be8\n")
    code, _, err = stop(str(src), "--endpoint", sim.url, "--dry-run")
    assert code == 1, err
    assert "2 invalid" in err
    assert "line 14: invalid: id 'NOT-AN-ID'" in err
    assert "line 15: invalid: project id '../etc'" in err
    assert len(sim.request_log) == 0


def ids_csv(path: Path) -> Path:
    """Three rows in project A and two in project B."""
    rows = [f"{P_A},00000000-0000-4000-8000-00000000000{n}" for n in range(3)]
    rows += [f"{P_B},00000000-0000-4000-8000-00000000001{n}" for n in range(2)]
    path.write_text("project_id,id\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("rates.csv", f"project_id,rate,burst\n{P_B},50,60\n"),
        ("rates.json", json.dumps([{"project_id": P_B, "rate": 50, "burst": 60}])),
        ("rates.json", json.dumps({P_B: {"rate": 50, "burst": 60}})),
    ],
    ids=["csv", "json-list", "json-mapping"],
)
def test_rates_file_raises_one_projects_limit(tmp_path: Path, name: str, text: str) -> None:
    """--rates-file (CSV, JSON list or mapping) gives that project its raised rate; others keep --rate."""
    rates = tmp_path / name
    rates.write_text(text)
    code, _, err = stop(
        str(ids_csv(tmp_path / "in.csv")), "--dry-run", "--endpoint", LOCAL, "--rates-file", str(rates)
    )
    assert code == 0, err
    assert f"{P_A}: 3 rows at 10/s (burst 10)" in err
    assert f"{P_B}: 2 rows at 50/s (burst 60)" in err


def test_rates_file_reaches_the_engine_options(tmp_path: Path) -> None:
    """The limits the engine builds its per-project buckets from come from --rates-file."""
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({P_B: 50}))
    kw = {
        "rates_file": str(rates), "rate": 10.0, "burst": None, "global_rate": None, "concurrency": 8,
        "max_attempts": 3, "timeout": 5.0, "wait": False, "wait_timeout": 60.0, "insecure": False,
    }  # fmt: skip
    options = build_options(kw, "http://127.0.0.1:1", None)
    assert options.rate_for(P_B) == RateLimit(50.0)
    assert options.rate_for(P_A) == RateLimit(10.0)


@pytest.mark.parametrize(
    "text",
    ["project_id,burst\nabc,5\n", "[1, 2]", '{"abc": "fast"}', '{"abc": -5}', "not,a\n,rates\n", "{broken"],
    ids=["no-rate", "list-of-numbers", "non-numeric", "negative", "no-project", "bad-json"],
)
def test_bad_rates_file_is_one_line_and_exit_2(tmp_path: Path, text: str) -> None:
    """A --rates-file that cannot be used stops the command before anything with one error line, exit 2."""
    rates = tmp_path / ("rates.json" if text.startswith(("[", "{")) else "rates.csv")
    rates.write_text(text)
    code, _, err = stop(
        str(ids_csv(tmp_path / "in.csv")), "--dry-run", "--endpoint", LOCAL, "--rates-file", str(rates)
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bulkops: error: --rates-file"), err


def test_missing_rates_file_is_exit_2(tmp_path: Path) -> None:
    """A --rates-file path that does not exist is one error line and exit 2."""
    code, _, err = stop(
        str(ids_csv(tmp_path / "in.csv")),
        "--dry-run",
        "--endpoint",
        LOCAL,
        "--rates-file",
        "/nonexistent.csv",
    )
    assert code == 2
    assert err.strip().splitlines() == [
        "bulkops: error: cannot read --rates-file /nonexistent.csv: No such file or directory"
    ]


def test_region_table_matches_the_official_sdk() -> None:
    """`--region` resolves exactly as the official SDK's ModelArts region table does."""
    region = pytest.importorskip("huaweicloudsdkmodelarts.v1.region.modelarts_region")
    sdk = {name: r.endpoints[0] for name, r in region.ModelArtsRegion.static_fields.items()}
    assert sdk == ENDPOINTS
    for name, url in sdk.items():
        assert resolve_endpoint(None, name) == url


def test_endpoint_wins_over_region() -> None:
    """--endpoint overrides --region, even a region not in the table (the way to reach a new region)."""
    assert resolve_endpoint("http://127.0.0.1:9", "cn-north-4") == "http://127.0.0.1:9"
    assert resolve_endpoint("http://127.0.0.1:9", "xx-new-9") == "http://127.0.0.1:9"


def test_a_mistyped_region_is_one_line_naming_the_closest_regions(tmp_path: Path) -> None:
    """`--region cn-nort-4`: exit 2 and one line naming cn-north-4 (it used to warn and fail every row on
    DNS); a region nothing resembles lists the known ones."""
    src = tmp_path / "ids.csv"
    src.write_text("3fa85f64-5717-4562-b3fc-2c963f66afa6\n")
    code, out, err = stop(str(src), "--region", "cn-nort-4", "--project-id", P_A, "--yes")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "bulkops: error: unknown --region 'cn-nort-4': did you mean cn-north-4, cn-north-9 or cn-north-2? "
        "(--endpoint URL reaches a region not in the SDK's table)"
    ]
    code, _, err = stop(str(src), "--region", "zzzz", "--project-id", P_A, "--dry-run")
    assert code == 2 and "known: af-north-1, " in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == [src]


def test_resume_without_report_is_refused(tmp_path: Path) -> None:
    """`stop ids.csv --resume` without --report: exit 2, one line saying --resume needs --report PATH,
    nothing created (it used to look for a fresh default report name, which never exists)."""
    src = tmp_path / "ids.csv"
    src.write_text("3fa85f64-5717-4562-b3fc-2c963f66afa6\n")
    for extra in ((), ("--dry-run",)):
        code, out, err = stop(str(src), "--resume", "--project-id", P_A, *extra)
        assert code == 2 and out == ""
        assert err.strip().splitlines() == [
            "bulkops: error: --resume needs --report PATH (the report to continue)"
        ]
    assert list(tmp_path.iterdir()) == [src]


def test_help_shows_every_environment_variable() -> None:
    """`bulkops stop --help` names the environment variable of every option that reads one, and the creds."""
    result = CliRunner().invoke(main, ["stop", "--help"], terminal_width=100)
    assert result.exit_code == 0
    text = re.sub(r"\s+", " ", result.output)
    command = main.commands["stop"]
    envvars = [p.envvar for p in command.params if getattr(p, "envvar", None)]
    assert sorted(str(e) for e in envvars) == [
        "BULKOPS_ENDPOINT",
        "BULKOPS_REDIS_URL",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "HUAWEICLOUD_SDK_REGION",
    ]
    for name in envvars:
        assert f"env var: {name}" in text, name
    for name in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN"):
        assert name in text
    assert "BULKOPS_AUTH_TOKEN" in text
    assert max(len(line) for line in result.output.splitlines()) <= 100


def test_project_id_from_the_environment(tmp_path: Path) -> None:
    """HUAWEICLOUD_SDK_PROJECT_ID gives the project of id-only rows, as --project-id would."""
    src = tmp_path / "ids.txt"
    src.write_text("00000000-0000-4000-8000-000000000001\n")
    result = CliRunner().invoke(
        main,
        ["stop", str(src), "--dry-run", "--endpoint", LOCAL],
        env={**NO_CREDENTIALS, "HUAWEICLOUD_SDK_PROJECT_ID": P_A},
    )
    assert result.exit_code == 0, result.stderr
    assert f"{P_A}: 1 row at" in result.stderr


def test_run_collects_garbage_less_often_and_restores_the_collector(sim: Simulator, tmp_path: Path) -> None:
    """A run raises the young-generation GC threshold while it runs and leaves the process' GC as it was."""
    import gc

    from bulkops.cli import command_stop

    seen: list[tuple[int, int]] = []
    real = command_stop.event_loop_options

    def spy() -> dict[str, object]:  # called inside the tuned block, just before the event loop starts
        seen.append((gc.get_threshold()[0], gc.get_freeze_count()))
        return real()

    before = gc.get_threshold()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(command_stop, "event_loop_options", spy)
        code, _, err = stop(
            str(fleet_csv(sim, tmp_path / "in.csv")),
            "--endpoint", sim.url, "--yes", "--report", str(tmp_path / "r.jsonl"),
        )  # fmt: skip
    assert code == 0, err
    assert seen and seen[0][0] >= 20_000 and seen[0][1] > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
