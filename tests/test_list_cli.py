"""`bulkops list` as a user types it, against the simulator on 127.0.0.1 (run in a background event loop, so
that the command runs in the test's thread as on the command line)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from _reliability import CLEAN_ENV
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner

from bulkops.cli.main import main
from bulkops.simulator import (
    AccessKey,
    GeneratedInventory,
    InventorySpec,
    Limit,
    Simulator,
    SimulatorConfig,
    run_simulator,
)
from bulkops.simulator.listing import OWNERS, owner_of

AK, SK = "LISTCLIAK0000000001", "list-cli-secret-key-000000000001"
FLEET = InventorySpec(
    projects=3, instances_per_project=12, status_mix={"RUNNING": 0.6, "STOPPED": 0.4}, seed=8
)
ENV = {**CLEAN_ENV, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}


@contextmanager
def simulator(**overrides: object) -> Iterator[Simulator]:
    """The fleet above behind AK/SK authentication, with `overrides` to the config."""
    config = SimulatorConfig(
        inventory=FLEET,
        access_keys=(AccessKey(AK, SK),),
        stop_delay=3600.0,
        **overrides,  # type: ignore[arg-type]
    )
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(run_simulator(config)) as sim:
        yield sim


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A fleet of 3 projects x 12 instances, 60 % RUNNING."""
    with simulator() as s:
        yield s


def bulkops(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `bulkops ARGS` in-process; (exit code, stdout, stderr)."""
    result = CliRunner().invoke(main, list(args), env=ENV if env is None else env, terminal_width=100)
    return result.exit_code, result.stdout, result.stderr


def rows(text: str) -> list[dict[str, str]]:
    """The CSV's rows."""
    return list(csv.DictReader(io.StringIO(text)))


def fleet(sim: Simulator, project: str, status: str | None = None) -> list[str]:
    """The ids of a project's instances (with that status)."""
    return [i for i, s in sim.inventory.iter_instances(project) if status is None or s == status]


def test_list_running_then_stop_the_csv_stops_exactly_those(sim: Simulator, tmp_path: Path) -> None:
    """`list --status RUNNING > tonight.csv`, then `stop tonight.csv`: every RUNNING instance accepted, no
    warning about the extra columns, nothing else touched."""
    project = sim.inventory.project_ids[0]
    code, out, err = bulkops("list", "--endpoint", sim.url, "--project-id", project, "--status", "running")
    assert code == 0, err
    assert out.splitlines()[0] == "project_id,id,name,status,flavor"
    assert sorted(r["id"] for r in rows(out)) == sorted(fleet(sim, project, "RUNNING"))
    tonight = tmp_path / "tonight.csv"
    tonight.write_text(out)
    report = tmp_path / "r.jsonl"
    code, _, err = bulkops("stop", str(tonight), "--endpoint", sim.url, "--report", str(report), "--yes")
    assert code == 0, err
    assert "unknown_columns" not in err
    outcomes = [json.loads(line)["outcome"] for line in report.read_text().splitlines()]
    assert outcomes == ["accepted"] * len(fleet(sim, project, "RUNNING"))
    assert len(sim.instances.overrides) == len(outcomes)


def test_pages_of_three_list_every_instance_of_every_project_once(sim: Simulator, tmp_path: Path) -> None:
    """--page-size 3 over 12 instances in 3 projects (two from --projects-file): 36 rows, 4 pages each."""
    first, second, third = sim.inventory.project_ids
    projects = tmp_path / "projects.txt"
    projects.write_text(f"# tonight\n{second}\n\n{third}  # the last\n{first}\n")
    code, out, err = bulkops(
        "list",
        "--endpoint",
        sim.url,
        "--project-id",
        first,
        "--projects-file",
        str(projects),
        "--page-size",
        "3",
    )
    assert code == 0, err
    listed = rows(out)
    assert [r["project_id"] for r in listed] == [first] * 12 + [second] * 12 + [third] * 12
    for project in (first, second, third):
        assert sorted(r["id"] for r in listed if r["project_id"] == project) == sorted(fleet(sim, project))
    assert all(r["name"] and r["flavor"] and r["status"] in ("RUNNING", "STOPPED") for r in listed)
    assert sim.stats.project(first).requests == 4  # 3+3+3+3: the answer's total (12) ends it
    assert "36 servers written of 36 listed in 3 projects" in err


def test_name_owner_and_the_other_formats(sim: Simulator) -> None:
    """--owner is the API's filter, --name a regex on the name; jsonl has the CSV's keys; table is aligned."""
    project = sim.inventory.project_ids[1]
    owner = OWNERS[2]
    some = fleet(sim, project)[0]
    args = ("list", "--endpoint", sim.url, "--project-id", project)
    code, out, _ = bulkops(*args, "--owner", owner, "--format", "jsonl")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(x["id"] for x in lines) == sorted(i for i in fleet(sim, project) if owner_of(i) == owner)
    assert all(list(x) == ["project_id", "id", "name", "status", "flavor"] for x in lines)
    code, out, _ = bulkops(*args, "--name", f"^devserver-{some[:8]}$", "--format", "table")
    assert code == 0
    head, body = out.splitlines()
    assert head.split() == ["project_id", "id", "name", "status", "flavor"]
    assert body.split()[:2] == [project, some] and body.index(some) == head.index(" id ") + 1


def test_a_forbidden_project_is_one_error_line_and_exit_1_the_others_are_listed(tmp_path: Path) -> None:
    """A 403 project: `bulkops: error: project P: HTTP 403 ...`, exit 1, the other project's rows in
    --output FILE, no traceback."""
    with simulator(forbidden_projects=frozenset({GeneratedInventory(FLEET).project_ids[0]})) as sim:
        bad, good = sim.inventory.project_ids[:2]
        out_file = tmp_path / "out.csv"
        code, out, err = bulkops(
            "list", "--endpoint", sim.url, "--project-id", bad, "--project-id", good, "-o", str(out_file)
        )
    assert code == 1
    assert out == ""
    assert f"bulkops: error: project {bad}: HTTP 403 APIGW.0302: " in err
    assert "Traceback" not in err and SK not in err
    assert {r["project_id"] for r in rows(out_file.read_text())} == {good}
    assert list(tmp_path.iterdir()) == [out_file]


def test_throttling_slows_the_listing_down_and_it_still_finishes() -> None:
    """A gateway limit of 2 requests/s with Retry-After against --rate 50 and pages of 2: every instance
    listed, exit 0, the 429s were answered."""
    with simulator(project_limit=Limit(2), retry_after=True) as sim:
        project = sim.inventory.project_ids[0]
        code, out, err = bulkops(
            "list", "--endpoint", sim.url, "--project-id", project, "--rate", "50", "--page-size", "2"
        )
        throttled = sim.stats.project(project).throttled
    assert code == 0, err
    assert sorted(r["id"] for r in rows(out)) == sorted(fleet(sim, project))
    assert throttled > 0


def test_a_wrong_secret_is_one_line_without_the_secret(sim: Simulator) -> None:
    """A 401 names the status and code; neither the SK given nor the right one appears anywhere."""
    env = {**ENV, "HUAWEICLOUD_SDK_SK": "wrong-secret-key-0123456789"}
    code, out, err = bulkops(
        "list", "--endpoint", sim.url, "--project-id", sim.inventory.project_ids[0], env=env
    )
    assert code == 1
    assert "HTTP 401 APIGW.0301" in err
    assert "wrong-secret-key" not in out + err and SK not in out + err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--endpoint", "http://127.0.0.1:9"),
            "no project: give --project-id ID (repeatable) or --projects-file",
        ),
        (
            ("--endpoint", "http://127.0.0.1:9", "--project-id", "a/b"),
            "--project-id: 'a/b' is not a project id",
        ),
        (("--project-id", "p1"), "no endpoint: give --region (e.g. cn-north-4) or --endpoint URL"),
        (("--region", "cn-nort-4", "--project-id", "p1"), "unknown --region 'cn-nort-4'"),
        (
            ("--endpoint", "http://127.0.0.1:9", "--project-id", "p1", "--name", "("),
            "is not a regular expression",
        ),
        (("--endpoint", "http://127.0.0.1:9", "--project-id", "p1", "--owner", "Bob"), "--owner must be"),
        (
            ("--endpoint", "http://127.0.0.1:9", "--projects-file", "/nonexistent"),
            "cannot read --projects-file",
        ),
        (("--endpoint", "http://127.0.0.1:9", "--project-id", "p1", "--rate", "fast"), "--rate"),
        (
            ("--endpoint", "http://127.0.0.1:9", "--project-id", "p1", "-o", "/nonexistent/x.csv"),
            "cannot write",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    """Every usage or configuration error: exit 2, one `bulkops: error:` line naming the problem, no
    traceback (nothing listens on 127.0.0.1:9, so nothing could have been sent)."""
    code, out, err = bulkops("list", *args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("bulkops: error: "), err
    assert message in err


def test_the_demo_lists_the_fleet_before_the_morning_start(tmp_path: Path) -> None:
    """`bulkops demo` shows, between the stop and the start, what `bulkops list` finds: every instance of
    the fleet counted by status, the stopped ones included."""
    result = CliRunner().invoke(
        main, ["demo", "--dir", str(tmp_path), "--projects", "1", "--instances", "8"], env=CLEAN_ENV
    )
    assert result.exit_code in (0, 1), result.stderr
    err = result.stderr
    line = err.split("The morning, before the start: bulkops list\n", 1)[1].splitlines()[0]
    counts = {status: int(n) for n, status in (part.split(" ") for part in line.split(", "))}
    assert sum(counts.values()) == 8 and "STOPPED" in counts
    assert err.index("bulkops list") < err.index("The morning: bulkops start")
