"""Bad input, through the command line: every kind gets `invalid` records with a reason, or one clear error
line and exit 2 with nothing sent. Never a traceback, never a request for a bad target.

The cases run `bulkops stop` in-process (click's CliRunner) against one simulator on 127.0.0.1 (a background
thread) whose request log is checked after each case: every request it saw names a valid project and
instance, and only the rows the case expects to be sent.

Click itself rejects values that are not numbers at all (`--rate abc`) with its usage message
(`Error: Invalid value for '--rate'`, exit 2); every other refusal is one `bulkops: error: ...` line.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from _reliability import CLEAN_ENV, SimThread
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from bulkops.cli.main import main
from bulkops.cloud.api import request_path
from bulkops.errors import InputError
from bulkops.io.targets import read_targets
from bulkops.models import Result, Target
from bulkops.simulator import InventorySpec, Simulator, SimulatorConfig
from bulkops.validation import INSTANCE_ID_RE, PROJECT_ID_RE, is_valid_instance_id, is_valid_project_id

NO_ENV = CLEAN_ENV
CONFIG = SimulatorConfig(
    seed=4,
    auth_enabled=False,
    stop_delay=3600.0,
    inventory=InventorySpec(projects=1, instances_per_project=4, status_mix={"RUNNING": 1.0}, seed=4),
)
DUPLICATES = 100_000


@dataclass(frozen=True)
class Case:
    """One kind of bad input and what it must produce."""

    name: str
    data: str | bytes | Callable[[str, str, str], bytes] | None = None
    args: tuple[str, ...] = ()
    code: int = 2
    error: str | None = None  # a substring of the error line (exit 2)
    invalid: dict[int, str] = field(default_factory=dict)  # line -> error_code of its invalid record
    sent: int = 0  # valid rows the case sends
    reason: str | None = None  # a substring of some invalid record's error_msg
    setup: str | None = None  # a special arrangement (see `arrange`)


def fmt(template: str) -> Callable[[str, str, str], bytes]:
    """A CSV body from a template with {P} (a project), {U} and {V} (two of its instances)."""
    return lambda p, u, v: template.format(P=p, U=u, V=v).encode()


def version(u: str, digit: str) -> str:
    """`u` with its version nibble replaced."""
    return u[:14] + digit + u[15:]


def variant(u: str, digit: str) -> str:
    """`u` with its variant nibble replaced."""
    return u[:19] + digit + u[20:]


H = "project_id,id\n"
CASES = [
    # -- the input as a whole ------------------------------------------------------------------------------
    Case("empty file", b"", code=0),
    Case("header only", H.encode(), code=0),
    Case("blank lines only", b"\n  \n\t\r\n", code=0),
    Case("unknown id column", fmt("project,instance\n{P},{U}\n"), error="no 'id' or 'instance_id' column"),
    Case("missing id column", fmt("project_id\n{P}\n"), error="no 'id' or 'instance_id' column"),
    Case("binary garbage with NUL bytes", bytes(range(256)) * 16, error="looks binary"),
    Case(
        "binary garbage, no NUL in line 1",
        b"\x89PNG\r\n\x1a\n" + bytes(range(1, 256)) * 8,
        error="no 'id' or 'instance_id' column",
    ),
    Case("UTF-16 text", lambda p, u, v: f"{H}{p},{u}\n".encode("utf-16"), error="UTF-16"),
    Case("bare CR line ends", fmt("id\r{U}\r{V}\r"), error="no 'id' or 'instance_id' column"),
    Case("directory as INPUT", setup="dir", error="is a directory"),
    Case("missing INPUT", setup="missing", error="does not exist"),
    Case("unreadable INPUT", setup="unreadable", error="not readable"),
    # -- rows -----------------------------------------------------------------------------------------------
    Case(
        "invalid UTF-8 in a row",
        lambda p, u, v: f"{H}{p},{u}".encode() + b"\xff\xfe\n" + f"{p},{v}\n".encode(),
        code=1,
        invalid={2: "bulkops.invalid_row"},
        sent=1,
        reason="not valid UTF-8",
    ),
    Case(
        "NUL bytes in a row",
        lambda p, u, v: f"{H}{p},{u}\x00\n{p},{v}\n".encode(),
        code=1,
        invalid={2: "bulkops.invalid_id"},
        sent=1,
    ),
    Case(
        "a 10 MB line",
        lambda p, u, v: H.encode() + b"x" * 10_000_000 + f"\n{p},{u}\n".encode(),
        code=1,
        invalid={2: "bulkops.invalid_row"},
        sent=1,
        reason="longer than",
    ),
    Case(
        "quoted fields with commas and newlines",
        fmt('project_id,id,note\n{P},{U},"stop, then\nwait"\n{P},{V},x\n'),
        code=0,
        sent=2,
    ),
    Case(
        "quoted id holding a comma",
        fmt('{H}{P},"{U},{V}"\n'.replace("{H}", H)),
        code=1,
        invalid={2: "bulkops.invalid_id"},
    ),
    Case("quoted id holding a newline", fmt(H + '{P},"{U}\n"\n'), code=1, invalid={2: "bulkops.invalid_id"}),
    Case(
        "unterminated quote",
        fmt(H + '{P},"{U}\n{P},{V}\n'),
        code=1,
        invalid={2: "bulkops.invalid_row"},
        sent=1,
        reason="quoted field not closed",
    ),
    Case(
        "id with an inner space",
        lambda p, u, v: f"{H}{p},{u[:4]} {u[5:]}\n".encode(),
        code=1,
        invalid={2: "bulkops.invalid_id"},
    ),
    Case("id with spaces and tabs around it", fmt(H + "{P}, \t{U}\t \n"), code=0, sent=1),
    Case(
        "upper-case id",
        lambda p, u, v: f"{H}{p},{u.upper()}\n".encode(),
        code=1,
        invalid={2: "bulkops.invalid_id"},
        reason="upper-case",
    ),
    Case(
        "wrong version digit",
        lambda p, u, v: f"{H}{p},{version(u, '0')}\n{p},{version(v, '6')}\n".encode(),
        code=1,
        invalid={2: "bulkops.invalid_id", 3: "bulkops.invalid_id"},
    ),
    Case(
        "wrong variant digit",
        lambda p, u, v: f"{H}{p},{variant(u, 'c')}\n{p},{variant(v, '7')}\n".encode(),
        code=1,
        invalid={2: "bulkops.invalid_id", 3: "bulkops.invalid_id"},
    ),
    Case(
        "../ in an id",
        fmt(H + "{P},../{U}\n{P},{U}/../../x\n"),
        code=1,
        invalid={2: "bulkops.invalid_id", 3: "bulkops.invalid_id"},
    ),
    Case(
        "%2F in an id",
        lambda p, u, v: f"{H}{p},{u.replace('-', '%2F', 1)}\n{p},%2F..%2F{v}\n".encode(),
        code=1,
        invalid={2: "bulkops.invalid_id", 3: "bulkops.invalid_id"},
    ),
    Case(
        "? in an id",
        fmt(H + "{P},{U}?x=1\n{P},?{V}\n"),
        code=1,
        invalid={2: "bulkops.invalid_id", 3: "bulkops.invalid_id"},
    ),
    Case(
        "# in an id",
        fmt(H + "{P},{U}#top\n{P},#{V}\n"),
        code=1,
        invalid={2: "bulkops.invalid_id", 3: "bulkops.invalid_id"},
    ),
    Case(
        "project id with /",
        fmt(H + "{P}/x,{U}\n/{P},{V}\n"),
        code=1,
        invalid={2: "bulkops.invalid_project_id", 3: "bulkops.invalid_project_id"},
    ),
    Case(
        "project id with ..",
        fmt(H + "..,{U}\n{P}/..,{V}\n"),
        code=1,
        invalid={2: "bulkops.invalid_project_id", 3: "bulkops.invalid_project_id"},
    ),
    Case(
        "project id with %2F",
        fmt(H + "{P}%2F..,{U}\n%2F,{V}\n"),
        code=1,
        invalid={2: "bulkops.invalid_project_id", 3: "bulkops.invalid_project_id"},
    ),
    Case(
        "project id with an inner space",
        lambda p, u, v: f"{H}{p[:5]} {p[5:]},{u}\n".encode(),
        code=1,
        invalid={2: "bulkops.invalid_project_id"},
    ),
    Case(
        "project id in unicode",
        fmt(H + "prøject,{U}\n１２３,{V}\n"),
        code=1,
        invalid={2: "bulkops.invalid_project_id", 3: "bulkops.invalid_project_id"},
    ),
    Case(
        "project id of 65 characters",
        fmt(H + "a" * 65 + ",{U}\n"),
        code=1,
        invalid={2: "bulkops.invalid_project_id"},
    ),
    Case("no project id anywhere", fmt("{U}\n"), code=1, invalid={1: "bulkops.missing_project_id"}),
    Case("several fields without a header", fmt("{U},{P}\n"), code=1, invalid={1: "bulkops.invalid_row"}),
    Case(
        f"{DUPLICATES} duplicates",
        lambda p, u, v: (H + f"{p},{u}\n" * (DUPLICATES + 1)).encode(),
        code=1,
        sent=1,
        reason=None,
        setup="duplicates",
    ),
    # -- the report -----------------------------------------------------------------------------------------
    Case(
        "report in a missing directory",
        fmt(H + "{P},{U}\n"),
        setup="report-missing-dir",
        error="directory does not exist",
    ),
    Case(
        "report in a read-only directory",
        fmt(H + "{P},{U}\n"),
        setup="report-read-only",
        error="permission denied",
    ),
    Case("report path is a directory", fmt(H + "{P},{U}\n"), setup="report-is-dir", error="is a directory"),
    Case(
        "existing report without --resume",
        fmt(H + "{P},{U}\n"),
        setup="report-exists",
        error="already exists",
    ),
    Case(
        "--resume on a file that is not a report",
        fmt(H + "{P},{U}\n"),
        args=("--resume",),
        setup="report-not-a-report",
        error="not a bulkops report",
    ),
    Case(
        "--resume on a binary file",
        fmt(H + "{P},{U}\n"),
        args=("--resume",),
        setup="report-binary",
        error="not a bulkops report",
    ),
    # -- flags ----------------------------------------------------------------------------------------------
    Case("negative rate", fmt(H + "{P},{U}\n"), args=("--rate", "-1"), error="rate must be a positive"),
    Case("zero rate", fmt(H + "{P},{U}\n"), args=("--rate", "0"), error="rate must be a positive"),
    Case("NaN rate", fmt(H + "{P},{U}\n"), args=("--rate", "nan"), error="rate must be a positive"),
    Case("zero burst", fmt(H + "{P},{U}\n"), args=("--burst", "0"), error="burst must be a positive"),
    Case("negative global rate", fmt(H + "{P},{U}\n"), args=("--global-rate", "-5"), error="rate must be"),
    Case("zero concurrency", fmt(H + "{P},{U}\n"), args=("--concurrency", "0"), error="--concurrency"),
    Case("negative concurrency", fmt(H + "{P},{U}\n"), args=("--concurrency", "-3"), error="--concurrency"),
    Case("zero max-attempts", fmt(H + "{P},{U}\n"), args=("--max-attempts", "0"), error="--max-attempts"),
    Case("NaN timeout", fmt(H + "{P},{U}\n"), args=("--timeout", "nan"), error="--timeout"),
    Case("infinite timeout", fmt(H + "{P},{U}\n"), args=("--timeout", "inf"), error="--timeout"),
    Case("negative timeout", fmt(H + "{P},{U}\n"), args=("--timeout", "-1"), error="--timeout"),
    Case("zero wait-timeout", fmt(H + "{P},{U}\n"), args=("--wait-timeout", "0"), error="--wait-timeout"),
    Case(
        "rate that is not a number",
        fmt(H + "{P},{U}\n"),
        args=("--rate", "fast"),
        error="Invalid value for '--rate'",
    ),
    Case("invalid --project-id", fmt("{U}\n"), args=("--project-id", "../x"), error="--project-id"),
    Case(
        "rates file that is not a rates file",
        fmt(H + "{P},{U}\n"),
        setup="rates-garbage",
        error="--rates-file",
    ),
    Case(
        "endpoint that is not http(s)",
        fmt(H + "{P},{U}\n"),
        setup="endpoint=ftp://127.0.0.1/",
        error="--endpoint must be an http(s) URL",
    ),
    Case(
        "endpoint with a query",
        fmt(H + "{P},{U}\n"),
        setup="endpoint=http://127.0.0.1:9/?x=1",
        error="must not carry a query",
    ),
    Case("no endpoint", fmt(H + "{P},{U}\n"), setup="endpoint=", error="no endpoint"),
]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[SimThread, Simulator]]:
    """One quiet simulator (no auth, RUNNING instances that stay STOPPING) for every case."""
    thread = SimThread(CONFIG)
    with thread as sim:
        yield thread, sim


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """The CLI configures structlog for its own stderr; undo that after each case."""
    yield
    structlog.reset_defaults()


def arrange(case: Case, tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Write the input and prepare the report for a case; returns the command line after `stop`."""
    project = sim.inventory.project_ids[0]
    u, v = (i for i, _ in list(sim.inventory.iter_instances(project))[:2])
    inp = tmp_path / "in.csv"
    report = tmp_path / "out" / "r.jsonl"
    report.parent.mkdir()
    data = case.data
    if callable(data):
        data = data(project, u, v)
    if isinstance(data, str):
        data = data.encode()
    if data is not None:
        inp.write_bytes(data)
    endpoint = sim.url
    setup = case.setup or ""
    if setup == "dir":
        inp = tmp_path / "out"
    elif setup == "missing":
        inp = tmp_path / "nowhere.csv"
    elif setup == "unreadable":
        inp.write_text(f"{H}{project},{u}\n")
        _deny(inp, "bulkops.io.csvrows", monkeypatch)
    elif setup == "report-missing-dir":
        report = tmp_path / "no" / "such" / "dir" / "r.jsonl"
    elif setup == "report-read-only":
        _deny(report, "bulkops.io.reportfile", monkeypatch)
    elif setup == "report-is-dir":
        report = tmp_path / "out"
    elif setup == "report-exists":
        report.write_text("{}\n")
    elif setup == "report-not-a-report":
        report.write_text("project_id,id\nsomething,else\n")
    elif setup == "report-binary":
        report.write_bytes(bytes(range(256)) * 4 + b"\n")
    elif setup == "rates-garbage":
        rates = tmp_path / "rates.csv"
        rates.write_text("project_id,rate\nabc,very fast\n")
        return [
            "stop",
            str(inp),
            "--endpoint",
            endpoint,
            "--yes",
            "--report",
            str(report),
            "--rates-file",
            str(rates),
            *case.args,
        ]
    elif setup.startswith("endpoint="):
        endpoint = setup.removeprefix("endpoint=")
    args = ["stop", str(inp), "--yes", "--report", str(report), *case.args]
    if endpoint:
        args += ["--endpoint", endpoint]
    return args


def _deny(path: Path, module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `path` unreadable or unwritable: chmod when not root, else refuse it in `module`'s open()."""
    if os.geteuid() != 0:
        target = path if path.exists() else path.parent
        target.chmod(0o500 if target.is_dir() else 0o000)
        monkeypatch.setattr(os, "geteuid", os.geteuid)  # nothing to undo but the chmod
        return
    import builtins
    import importlib

    real_open = builtins.open

    def guarded(file: Any, *args: Any, **kw: Any) -> Any:
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kw)

    monkeypatch.setattr(importlib.import_module(module), "open", guarded, raising=False)


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=[pytest.mark.slow] if c.setup == "duplicates" else []) for c in CASES],
    ids=[c.name for c in CASES],
)
def test_bad_input_is_reported_or_refused_never_sent(
    case: Case, served: tuple[SimThread, Simulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each kind of bad input gets invalid records with reasons, or one error line and exit 2, never a
    traceback and never a request for a bad target."""
    thread, sim = served
    args = arrange(case, tmp_path, sim, monkeypatch)
    before = len(thread.snapshot())
    result = CliRunner().invoke(main, args, env=NO_ENV)
    log = thread.snapshot()[before:]
    out, err = result.stdout, result.stderr
    assert "Traceback" not in out + err
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == case.code, err[-2000:]

    # Never a request for a bad target; only the rows the case expects to be sent.
    assert all(is_valid_project_id(r.project_id) and is_valid_instance_id(r.id) for r in log)
    assert len(log) == case.sent, [(r.project_id, r.id) for r in log]

    report = Path(args[args.index("--report") + 1])
    if case.code == 2:
        assert case.error is not None
        errors = [line for line in err.splitlines() if case.error in line]
        assert len(errors) == 1, err
        assert errors[0].startswith("bulkops: error: ")
        assert len(errors[0]) < 400
        if case.setup in (None, "rates-garbage") or (case.setup or "").startswith("endpoint="):
            assert not report.exists()  # nothing sent, nothing written
        return
    records = [json.loads(line) for line in report.read_text().splitlines()]
    invalid = {r["line"]: r for r in records if r["outcome"] == "invalid"}
    assert {n: r["error_code"] for n, r in invalid.items()} == case.invalid
    assert all(r["error_msg"] for r in invalid.values())
    if case.reason is not None:
        assert any(case.reason in r["error_msg"] for r in invalid.values()), invalid
    assert all(len(json.dumps(r)) < 2000 for r in records)  # a 10 MB line is not copied into the report
    if case.setup == "duplicates":
        skipped = [r for r in records if r["outcome"] == "skipped"]
        assert len(skipped) == DUPLICATES and len(records) == DUPLICATES + 1
        assert {r["error_msg"] for r in skipped} == {"duplicate of line 2"}


# -- properties: whatever a row holds, the only request it can become is the stop of a valid instance ------

STOP_PATH = re.compile(rf"/v1/({PROJECT_ID_RE.pattern})/dev-servers/({INSTANCE_ID_RE.pattern})/stop")
U1 = "62383738-e52a-450a-9f84-f9e705402be8"
P1 = "0123456789abcdef0123456789abcdef"
nasty = st.sampled_from(
    [
        "",
        " ",
        "\t",
        "/",
        "..",
        "../",
        "%2F",
        "%2e%2e",
        "?",
        "#",
        "\\",
        "\x00",
        "\r",
        "\n",
        "\u2028",
        ",",
        '"',
        "ø",
        "１",
        "\ufeff",
        U1,
        U1.upper(),
        P1,
        P1 + "/x",
        "-",
        "_",
    ]
)
part = st.one_of(
    nasty,
    st.text(max_size=70),
    st.lists(nasty, min_size=1, max_size=4).map("".join),
    st.builds(lambda a, b: a + U1 + b, nasty, nasty),
    st.builds(lambda a, b: a + P1 + b, nasty, nasty),
)


@settings(max_examples=500, deadline=None)
@given(project=part, instance=part)
def test_request_path_is_a_valid_stop_path_or_refused(project: str, instance: str) -> None:
    """The URL builder either refuses a part or returns exactly /v1/{project}/dev-servers/{id}/stop, which
    yarl sends unchanged (no normalisation of dots, no re-encoding)."""
    try:
        path = request_path(project, instance, "stop")
    except ValueError:
        assert not (is_valid_project_id(project) and is_valid_instance_id(instance))
        return
    match = STOP_PATH.fullmatch(path)
    assert match is not None and match.groups() == (project, instance)
    url = URL("https://modelarts.example.com" + path, encoded=True)
    assert url.raw_path == path and url.path == path and url.host == "modelarts.example.com"
    assert not url.query_string and not url.fragment


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.lists(st.tuples(part, part), max_size=8), st.booleans())
def test_any_bytes_become_only_valid_stop_paths(
    noise: bytes, rows: list[tuple[str, str]], header: bool
) -> None:
    """Arbitrary bytes and hostile cells through the reader: every Target maps to a valid stop path, every
    other row is an invalid or skipped record, and the only error is a one-line InputError."""
    body = "".join(f"{p},{i}\n" for p, i in rows).encode("utf-8", "surrogatepass") + noise
    data = (b"project_id,id\n" if header else b"") + body
    try:
        records = list(read_targets(io.BytesIO(data), default_project=P1))
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    for rec in records:
        if isinstance(rec, Target):
            path = request_path(rec.project_id, rec.id, "stop")
            assert STOP_PATH.fullmatch(path) is not None
        else:
            assert isinstance(rec, Result) and rec.outcome.value in ("invalid", "skipped")


@pytest.mark.parametrize(
    "args",
    [
        ["stop", "--no-such-flag", "x.csv"],
        ["stop"],
        ["stop", "x.csv", "--concurrency", "many"],
        ["no-such-command"],
        ["report", "summarize"],
    ],
)
def test_a_flag_click_cannot_parse_is_one_error_line(args: list[str]) -> None:
    """A misspelt flag, a missing argument or a bad flag value is one `bulkops: error:` line and exit 2."""
    result = CliRunner().invoke(main, args, env=NO_ENV)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bulkops: error: ") and "--help" in lines[0]
