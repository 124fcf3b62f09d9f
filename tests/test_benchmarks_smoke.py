"""The benchmarks run end to end (tiny sizes, no speed asserted), and start-up stays light.

Speed is measured by `python -m benchmarks`, never asserted here: these tests only prove that the harness
completes and writes its JSON, that the hot-path rewrites say exactly what the plain code says, and that
importing bulkops (or asking for --help) does not pull in what it does not need.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkops.cloud.auth import Signer, sdk_date
from bulkops.io.report import _dumps, record_line, to_record
from bulkops.models import Outcome, Result

ROOT = Path(__file__).resolve().parent.parent


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    ).stdout
    return set(out.split())


def test_import_bulkops_pulls_in_neither_simulator_nor_progress_nor_aiohttp() -> None:
    """`import bulkops` loads no simulator, no progress display and no aiohttp until they are used."""
    loaded = _modules_after("import bulkops")
    assert "bulkops.simulator" not in loaded
    assert "bulkops.cli.progress" not in loaded
    assert "aiohttp" not in loaded


def test_help_does_not_import_aiohttp() -> None:
    """`bulkops --help` runs without importing aiohttp (or the simulator)."""
    code = (
        "import sys\nfrom bulkops.cli.main import main\nsys.argv = ['bulkops', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass"
    )
    loaded = _modules_after(code)
    assert "aiohttp" not in loaded
    assert "bulkops.simulator" not in loaded


def _run_module(*args: str, timeout: float) -> str:
    """`python -m ARGS` from the project's root; its stdout, after asserting it exited 0."""
    proc = subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_benchmark_smoke_completes_and_writes_its_json(tmp_path: Path) -> None:
    """`python -m benchmarks smoke` runs every client side by side at tiny sizes and writes its JSON."""
    _run_module("benchmarks", "smoke", "--out", str(tmp_path), "--no-plot", timeout=170)
    data = json.loads((tmp_path / "smoke.json").read_text())
    scenarios = {r["scenario"] for r in data["results"]}
    assert {"signing", "startup", "cpu", "cpu-50ms", "rate"} <= scenarios
    throttle = {"throttle-2x", "throttle-10x", "throttle-100x", "throttle-bare", "throttle-minute"}
    assert throttle | {"throttle-drop"} <= scenarios  # issue 11's matrix, its figures unchecked here
    assert {"shared", "shared-cpu"} <= scenarios  # issue 14's runners sharing Redis (skipped without it)
    if os.environ.get("CI"):  # as tests/_redis.py: with CI set, Redis runs must not be skipped
        shared = [r for r in data["results"] if r["scenario"] in ("shared", "shared-cpu")]
        assert not [r["skipped"] for r in shared if "skipped" in r]
    clients = {run["client"] for r in data["results"] for run in r.get("runs", [])}
    assert {"bulkops", "aiohttp_loop"} <= clients
    assert all(run["rows"] > 0 for r in data["results"] for run in r.get("runs", []))
    assert (tmp_path / "smoke.md").exists()


def test_engine_cost_runs_both_sides() -> None:
    """`python -m benchmarks.engine_cost` runs the real engine and the minimal loop and prints both costs."""
    args = ["--rows", "300", "--rounds", "1", "--latency", "0"]
    lines = _run_module("benchmarks.engine_cost", *args, timeout=120).splitlines()
    assert [line.split(":")[0] for line in lines] == ["engine", "loop"]
    assert all(float(line.split()[1]) > 0 for line in lines)


# -- the hot-path rewrites are exact ----------------------------------------------------------------------

_maybe_text = st.none() | st.text(max_size=30)
_maybe_int = st.none() | st.integers(min_value=-(2**40), max_value=2**40)


@settings(max_examples=300, deadline=None)
@given(
    line=st.integers(min_value=0, max_value=2**40),
    project=_maybe_text,
    id_=_maybe_text,
    outcome=st.sampled_from(list(Outcome)),
    status=_maybe_text,
    http_status=_maybe_int,
    code=_maybe_text,
    msg=_maybe_text,
    rid=_maybe_text,
    attempts=st.integers(min_value=0, max_value=99),
    elapsed=st.integers(min_value=0, max_value=10**9),
    finished=st.text(min_size=1, max_size=30),  # empty means "now": two calls, two times
)
def test_report_line_is_the_json_encoders(
    line: int,
    project: str | None,
    id_: str | None,
    outcome: Outcome,
    status: str | None,
    http_status: int | None,
    code: str | None,
    msg: str | None,
    rid: str | None,
    attempts: int,
    elapsed: int,
    finished: str,
) -> None:
    """The hand-written report line equals json's encoding of the record, for any values (unicode too)."""
    result = Result(
        line, project, id_, outcome, status, http_status, code, msg, rid, attempts, elapsed, finished
    )
    assert record_line(result) == _dumps(to_record(result))


def test_report_line_falls_back_for_unexpected_types() -> None:
    """A value of another type (a bool, a float) is written by the json encoder, as before."""
    result = Result(1, "p", "i", Outcome.FAILED, http_status=True, elapsed_ms=1.5, finished_at="t")  # type: ignore[arg-type]
    assert record_line(result) == _dumps(to_record(result))


_path_segment = st.text(st.characters(codec="utf-8", exclude_characters="/"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["PUT", "GET", "delete"]),
    segments=st.lists(_path_segment | st.from_regex(r"\A[A-Za-z0-9_-]{1,16}\Z"), max_size=5),
    host=st.sampled_from(["127.0.0.1:8080", " modelarts.cn-north-4.myhuaweicloud.com ", "h"]),
    project=st.sampled_from(["", "0123456789abcdef0123456789abcdef", " p "]),
    token=st.sampled_from(["", "gQpjbi1ub3J0aC00Token=="]),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_simple_authorization_equals_the_general_signer(
    method: str, segments: list[str], host: str, project: str, token: str, now: float
) -> None:
    """The signer's fast path (no query, no body, known headers) gives the general path's exact value."""
    signer = Signer("AKEXAMPLE0000000001", "sEcReT/ExAmPlE+0123456789")
    path = "/" + "/".join(segments)
    date = sdk_date(now)
    headers = {"Host": host, "X-Sdk-Date": date}
    if project:
        headers["X-Project-Id"] = project
    if token:
        headers["X-Security-Token"] = token
    expected = signer.authorization(method, path, (), headers)
    assert signer.simple_authorization(method, path, host, date, project, token) == expected


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_benchmark_job_runs_every_variant(tmp_path: Path) -> None:
    """`python -m benchmarks job`'s scenario at tiny sizes: 1, 2 and 4 processes on both clouds finish every
    row, and its table and plot are made (figures unchecked; skipped without redis-server)."""
    from benchmarks import jobbench
    from benchmarks.scenarios import SMOKE

    results = jobbench.scenario_job(tmp_path, SMOKE)
    if results[0].get("skipped"):
        pytest.skip(results[0]["skipped"])
    assert [r["scenario"] for r in results] == ["job-latency", "job-rate"]
    for result in results:
        assert [run["hands"] for run in result["runs"]] == [1, 2, 4]
        assert all(run["rows"] == 4 * 10 for run in result["runs"])
    assert "| latency-bound | 4 |" in jobbench.details(results)
    # The plot needs matplotlib (the `bench` extra); CI installs `test` only, and then no plot is made.
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    expected = ["job-scaling.png"] if has_matplotlib else []
    assert [p.name for p in jobbench.plot(results, tmp_path)] == expected
