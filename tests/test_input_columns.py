"""Header columns bulkops does not know: named in a warning; a misspelt project column never silently
sends every row to the default project (issue 17, item 5)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from _reliability import CLEAN_ENV
from click.testing import CliRunner
from structlog.testing import capture_logs

from bulkops.cli.main import main
from bulkops.errors import InputError
from bulkops.io.targets import read_targets
from bulkops.models import Result, Target

P = "0123456789abcdef0123456789abcdef"
Q = "fedcba9876543210fedcba9876543210"
U1 = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


def read(text: str, default_project: str | None = P) -> list[Target | Result]:
    """The rows of `text`, read with `default_project`."""
    return list(read_targets(io.BytesIO(text.encode()), default_project=default_project))


def test_unknown_columns_are_named_in_one_warning() -> None:
    """Columns besides id, instance_id, project_id and `bulkops list`'s are named once, in order; the rows
    read as before."""
    with capture_logs() as logs:
        rows = read(f"zone,id,Size,project_id,zone,\nz1,{U1},f,{Q},z2,\n")
    assert rows == [Target(2, Q, U1)]
    warnings = [e for e in logs if e["event"] == "bulkops.input.unknown_columns"]
    assert len(warnings) == 1
    assert warnings[0]["columns"] == ["zone", "Size"] and warnings[0]["count"] == 2
    assert warnings[0]["log_level"] == "warning"


def test_the_columns_bulkops_list_writes_are_read_without_a_warning() -> None:
    """`bulkops list`'s header (project_id,id,name,status,flavor) reads its rows and warns of nothing."""
    with capture_logs() as logs:
        rows = read(f"project_id,id,name,status,flavor\n{Q},{U1},devserver-1,RUNNING,Si2.large.4\n")
    assert rows == [Target(2, Q, U1)]
    assert [e for e in logs if e["event"] == "bulkops.input.unknown_columns"] == []


def test_known_columns_alone_warn_of_nothing() -> None:
    """A header of known names (any case, padded) or no header at all logs no warning."""
    with capture_logs() as logs:
        read(f" ID ,Project_ID\n{U1},{Q}\n")
        read(f"instance_id\n{U1}\n")
        read(f"{U1}\n")
    assert logs == []


@pytest.mark.parametrize("name", ["projct_id", "project", "Project ID", "prject_id", "projectid", "proj"])
def test_misspelt_project_column_with_a_default_project_is_refused(name: str) -> None:
    """No project_id column, one that looks like it, and a default project: one InputError naming it."""
    with pytest.raises(InputError) as caught:
        read(f"{name},id\n{Q},{U1}\n")
    message = str(caught.value)
    assert "\n" not in message
    assert repr(name) in message and "project_id" in message and P in message


@pytest.mark.parametrize(
    ("header", "default"),
    [
        ("projct_id,id,project_id", P),  # the real column is there: the look-alike is only unknown
        ("projct_id,id", None),  # no default: every row says it has no project, nothing goes astray
        ("object,id", P),  # three or more edits from project_id, and no "proj"
    ],
)
def test_look_alike_column_only_warns_when_nothing_goes_astray(header: str, default: str | None) -> None:
    """A look-alike column is refused only when rows would silently take the default project."""
    with capture_logs() as logs:
        rows = read(f"{header}\n{Q},{U1},{Q}\n", default_project=default)
    assert len(rows) == 1
    assert [e["event"] for e in logs] == ["bulkops.input.unknown_columns"]


def _stop(tmp_path: Path, header: str, *extra: str) -> tuple[int, str]:
    """`bulkops stop` on a one-row file under `header`, project from HUAWEICLOUD_SDK_PROJECT_ID."""
    src = tmp_path / "in.csv"
    src.write_text(f"{header}\n{Q},{U1}\n")
    env = {**CLEAN_ENV, "HUAWEICLOUD_SDK_PROJECT_ID": P}
    args = ["stop", str(src), "--endpoint", "http://127.0.0.1:9", "--log-format", "json", *extra]
    result = CliRunner().invoke(main, args, env=env)
    return result.exit_code, result.stderr


def test_cli_refuses_a_misspelt_project_column_with_the_project_from_the_environment(tmp_path: Path) -> None:
    """`projct_id` with HUAWEICLOUD_SDK_PROJECT_ID set: one error line, exit 2, no report, nothing sent."""
    report = tmp_path / "r.jsonl"
    code, err = _stop(tmp_path, "projct_id,id", "--yes", "--report", str(report))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bulkops: error: ")
    assert "'projct_id'" in lines[0] and "HUAWEICLOUD_SDK_PROJECT_ID" in lines[0]
    assert not report.exists()


def test_cli_names_unknown_columns_in_a_log_line(tmp_path: Path) -> None:
    """An unknown column (not a look-alike) is a `bulkops.input.unknown_columns` warning; the run goes on."""
    code, err = _stop(tmp_path, "project_id,id", "--dry-run")
    assert code == 0, err
    assert "unknown_columns" not in err
    src = tmp_path / "in.csv"
    code, err = _stop(tmp_path, "project_id,id,zone", "--dry-run")
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    warning = next(e for e in events if e["event"] == "bulkops.input.unknown_columns")
    assert warning["columns"] == ["zone"] and warning["input"] == repr(str(src))
