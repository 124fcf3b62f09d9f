"""Issue 17, what an SRE met in a rehearsal: pre-flight, resume safety, CI output, confirmation, rates.

Each test drives `bulkops stop` as a user types it (click's CliRunner, or a subprocess where a real process
matters) against the simulator on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _reliability import CLEAN_ENV
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner

from bulkops.cli import command_stop
from bulkops.cli.main import main
from bulkops.cli.runlog import Heartbeat
from bulkops.io.report import ReportWriter, default_report_path
from bulkops.io.reportmeta import meta_path
from bulkops.models import Outcome, Result
from bulkops.options import parse_rate
from bulkops.simulator import InventorySpec, Simulator, SimulatorConfig, run_simulator, write_csv
from bulkops.summary import RunStats

AK, SK = "AKEXAMPLE0123456789", "sk-secret-value-never-shown"
REMOTE = "https://modelarts.cn-north-4.myhuaweicloud.com"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A quiet simulator (no auth, RUNNING instances) with 2 projects of 5 instances on 127.0.0.1."""
    config = SimulatorConfig(
        auth_enabled=False,
        inventory=InventorySpec(projects=2, instances_per_project=5, status_mix={"RUNNING": 1.0}, seed=17),
    )
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(run_simulator(config)) as s:
        yield s


def stop(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`bulkops stop ARGS` in-process; (exit code, stdout, stderr)."""
    result = CliRunner().invoke(main, ["stop", *args], env={**CLEAN_ENV, **(env or {})}, terminal_width=100)
    return result.exit_code, result.stdout, result.stderr


def fleet(sim: Simulator, path: Path) -> Path:
    """The simulator's fleet as an input CSV (10 rows)."""
    write_csv(sim.config.inventory, path)
    return path


def puts(sim: Simulator) -> int:
    """Stop requests the simulator received."""
    return sum(1 for r in sim.request_log if r.method == "PUT")


def rows_of(path: Path) -> list[tuple[str, str]]:
    """(project_id, id) of every data row of a fleet CSV."""
    return [tuple(line.split(",")[:2]) for line in path.read_text().splitlines()[1:]]  # type: ignore[misc]


def partial_report(src: Path, report: Path, done: int) -> None:
    """A report in which the first `done` rows of `src` were accepted (as an interrupted run leaves it)."""
    writer = ReportWriter.open(str(report), append=False)
    writer.write_many(
        Result(n, pid, iid, Outcome.ACCEPTED, attempts=1)
        for n, (pid, iid) in enumerate(rows_of(src)[:done], 2)
    )
    writer.close()


def one_error_line(err: str) -> str:
    """The one `bulkops: error:` line of stderr (JSON log lines aside)."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("{")]
    assert len(lines) == 1, err
    assert lines[0].startswith("bulkops: error: "), err
    return lines[0]


# -- 1: --dry-run is a pre-flight check -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ((), {}, "no endpoint"),
        (("--endpoint", "ftp://example.com"), {}, "must be an http(s) URL"),
        (("--endpoint", "http://modelarts.example.com"), {}, "refusing plain http://"),
        (("--endpoint", REMOTE), {}, "no credentials"),
        (("--region", "cn-north-4"), {"HUAWEICLOUD_SDK_AK": AK}, "both HUAWEICLOUD_SDK_AK and"),
        (("--endpoint", "http://127.0.0.1:9", "--report", "{existing}"), {}, "already exists; use --resume"),
        (("--endpoint", "http://127.0.0.1:9", "--report", "{missing}", "--resume"), {}, "does not exist"),
        (("--endpoint", "http://127.0.0.1:9", "--report", "{nodir}"), {}, "directory does not exist"),
    ],
    ids=["no-endpoint", "bad-endpoint", "plain-http", "no-credentials", "half-aksk", "existing-report",
         "resume-missing-report", "report-dir-missing"],
)  # fmt: skip
def test_dry_run_fails_where_the_real_run_would(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    """--dry-run exits 2 with one line for each refusal of the real run, and the real run agrees."""
    src = tmp_path / "in.csv"
    src.write_text(f"project_id,id\n{'a' * 32},00000000-0000-4000-8000-000000000001\n")
    (tmp_path / "existing.jsonl").write_text('{"line":2,"project_id":"x","id":"y","outcome":"accepted"}\n')
    paths = {
        "{existing}": str(tmp_path / "existing.jsonl"),
        "{missing}": str(tmp_path / "missing.jsonl"),
        "{nodir}": str(tmp_path / "no" / "r.jsonl"),
    }
    argv = [paths.get(a, a) for a in args]
    for extra in (["--dry-run"], ["--yes"]):
        code, _, err = stop(str(src), *argv, *extra, env=env)
        assert code == 2, (extra, err)
        assert says in one_error_line(err), (extra, err)
    assert not (tmp_path / "missing.jsonl").exists()


def test_dry_run_plan_names_endpoint_credential_kind_and_report(tmp_path: Path) -> None:
    """The plan shows the endpoint, the kind of credential (never its value) and the report path."""
    src = tmp_path / "in.csv"
    src.write_text(f"project_id,id\n{'a' * 32},00000000-0000-4000-8000-000000000001\n")
    report = tmp_path / "run.jsonl"
    env = {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}
    code, _, err = stop(str(src), "--dry-run", "--region", "cn-north-4", "--report", str(report), env=env)
    assert code == 0, err
    assert f"endpoint: {REMOTE}" in err
    assert "credentials: AK/SK (HUAWEICLOUD_SDK_AK, HUAWEICLOUD_SDK_SK)" in err
    assert f"report: {report} (new)" in err
    assert "1 row to stop in 1 project," in err  # singular: "1 row", "1 project"
    assert AK not in err and SK not in err
    assert not report.exists() and not Path(meta_path(str(report))).exists()  # a dry run writes nothing


def test_dry_run_with_resume_counts_only_the_rows_left(sim: Simulator, tmp_path: Path) -> None:
    """--dry-run --resume counts the rows the report does not hold as done, and leaves the report as it is."""
    src = fleet(sim, tmp_path / "in.csv")
    report = tmp_path / "run.jsonl"
    partial_report(src, report, done=4)
    before = report.read_bytes()
    code, _, err = stop(str(src), "--dry-run", "--resume", "--endpoint", sim.url, "--report", str(report))
    assert code == 0, err
    assert "6 rows to stop in 2 projects" in err and "4 rows already done in the report" in err
    assert report.read_bytes() == before and puts(sim) == 0


# -- 2: a report knows its input ----------------------------------------------------------------------------


def test_report_records_its_input_and_resume_refuses_other_input(sim: Simulator, tmp_path: Path) -> None:
    """A run writes REPORT.meta.json (input path, size, SHA-256); --resume from other input is one line,
    exit 2, nothing sent, the report untouched; the same content under another path is accepted."""
    src = fleet(sim, tmp_path / "in.csv")
    report = tmp_path / "run.jsonl"
    code, _, err = stop(str(src), "--endpoint", sim.url, "--yes", "--report", str(report))
    assert code == 0, err
    meta = json.loads(Path(meta_path(str(report))).read_text())
    assert meta["bulkops_report"] == 1 and meta["input"] == str(src.resolve())
    assert (
        meta["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest() and meta["size"] == src.stat().st_size
    )
    assert len(report.read_text().splitlines()) == 10  # the report itself is records only

    other = tmp_path / "demo.csv"
    other.write_text(src.read_text().replace("\n", "\n", 1) + "\n")  # one more blank line: other bytes
    sent, before = puts(sim), report.read_bytes()
    code, _, err = stop(str(other), "--endpoint", sim.url, "--yes", "--report", str(report), "--resume")
    assert code == 2
    line = one_error_line(err)
    assert f"was started from {src.resolve()}" in line and "choose another --report" in line
    assert report.read_bytes() == before and puts(sim) == sent

    moved = tmp_path / "moved.csv"
    moved.write_bytes(src.read_bytes())
    code, _, err = stop(str(moved), "--endpoint", sim.url, "--yes", "--report", str(report), "--resume")
    assert code == 0, err
    assert puts(sim) == sent  # every row was done: nothing sent again


def test_resuming_the_demos_report_from_other_input_is_refused(tmp_path: Path) -> None:
    """The demo's report records its input too: `stop --resume` on it from another CSV is refused."""
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path), "--projects", "1", "--instances", "5",
                                       "--rate", "50"], env=CLEAN_ENV)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = tmp_path / "demo-report.jsonl"
    assert json.loads(Path(meta_path(str(report))).read_text())["input"].endswith("demo-input.csv")
    other = tmp_path / "mine.csv"
    other.write_text(f"project_id,id\n{'a' * 32},00000000-0000-4000-8000-000000000001\n")
    before = report.read_bytes()
    code, _, err = stop(str(other), "--endpoint", "http://127.0.0.1:9", "--yes", "--report", str(report),
                        "--resume")  # fmt: skip
    assert code == 2 and "demo-input.csv" in one_error_line(err)
    assert report.read_bytes() == before


def test_resume_of_a_report_without_metadata_warns_and_continues(sim: Simulator, tmp_path: Path) -> None:
    """A report from an older bulkops or the Python API (no sidecar) is resumed with a warning."""
    src = fleet(sim, tmp_path / "in.csv")
    report = tmp_path / "run.jsonl"
    partial_report(src, report, done=4)
    code, _, err = stop(str(src), "--endpoint", sim.url, "--yes", "--report", str(report), "--resume")
    assert code == 0, err
    assert "bulkops.resume.unchecked" in err
    assert puts(sim) == 6 and Path(meta_path(str(report))).exists()


# -- 6: CI and cron ------------------------------------------------------------------------------------------


def test_off_a_tty_the_summary_is_one_json_event(sim: Simulator, tmp_path: Path) -> None:
    """With JSON logs off a TTY every stderr line is JSON; the summary is the event bulkops.run.summary."""
    report = tmp_path / "run.jsonl"
    code, _, err = stop(str(fleet(sim, tmp_path / "in.csv")), "--endpoint", sim.url, "--yes", "--report",
                        str(report), "--log-level", "info")  # fmt: skip
    assert code == 0, err
    events = [json.loads(line) for line in err.strip().splitlines()]  # raises on a plain-text line
    summaries = [e for e in events if e["event"] == "bulkops.run.summary"]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["rows"] == 10 and summary["outcomes"] == {"accepted": 10}
    assert summary["report"] == str(report) and summary["exit_code"] == 0
    assert summary["headline"].startswith("bulkops stop: 10 rows in ")


def test_console_logs_keep_the_plain_summary(sim: Simulator, tmp_path: Path) -> None:
    """--log-format console keeps the summary as text, with the report's path."""
    report = tmp_path / "run.jsonl"
    code, _, err = stop(str(fleet(sim, tmp_path / "in.csv")), "--endpoint", sim.url, "--yes", "--report",
                        str(report), "--log-format", "console")  # fmt: skip
    assert code == 0, err
    assert "bulkops stop: 10 rows in" in err and f"report: {report}" in err


def test_quiet_prints_only_errors(sim: Simulator, tmp_path: Path) -> None:
    """--quiet: a successful run prints nothing at all; an error is still one line."""
    src = fleet(sim, tmp_path / "in.csv")
    code, out, err = stop(str(src), "--endpoint", sim.url, "--yes", "--report", str(tmp_path / "r.jsonl"),
                          "--quiet", "--log-format", "console")  # fmt: skip
    assert code == 0 and err == "" and out == ""
    code, _, err = stop(str(src), "--yes", "--quiet")
    assert code == 2 and "no endpoint" in one_error_line(err)


def test_progress_events_come_every_interval_off_a_tty(tmp_path: Path) -> None:
    """Off a TTY, a bulkops.run.progress event comes every --progress-interval seconds of a slow run."""
    config = SimulatorConfig(
        auth_enabled=False,
        inventory=InventorySpec(projects=1, instances_per_project=8, status_mix={"RUNNING": 1.0}, seed=5),
    )
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(run_simulator(config)) as s:
        src = tmp_path / "in.csv"
        write_csv(config.inventory, src)
        code, _, err = stop(str(src), "--endpoint", s.url, "--yes", "--report", str(tmp_path / "r.jsonl"),
                            "--rate", "4", "--burst", "1", "--progress-interval", "0.3")  # fmt: skip
    assert code == 0, err
    events = [json.loads(line) for line in err.strip().splitlines()]
    progress = [e for e in events if e["event"] == "bulkops.run.progress"]
    assert len(progress) >= 2, err
    assert all(e["total"] == 8 and e["level"] == "info" for e in progress)
    assert progress[-1]["done"] >= progress[0]["done"]


def test_heartbeat_reports_rows_done_and_the_rate_since_the_last_event() -> None:
    """Each progress event has rows done of the total and rows per second since the event before."""
    now = [100.0]
    emitted: list[dict[str, object]] = []
    beat = Heartbeat(50, 30.0, emit=lambda event, **kw: emitted.append({"event": event, **kw}),
                     clock=lambda: now[0])  # fmt: skip
    stats = RunStats()
    for n in range(30):
        stats.tally(Result(n + 1, "p", f"i{n}", Outcome.ACCEPTED))
    beat.on_results([], stats)
    now[0] += 30.0
    beat.tick()
    assert emitted[-1]["done"] == 30 and emitted[-1]["total"] == 50 and emitted[-1]["rows_per_s"] == 1.0
    assert emitted[-1]["outcomes"] == {"accepted": 30} and emitted[-1]["event"] == "bulkops.run.progress"


def test_default_report_names_do_not_collide(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two back-to-back runs without --report write two reports (milliseconds and the pid in the name)."""
    monkeypatch.chdir(tmp_path)
    src = fleet(sim, tmp_path / "in.csv")
    for _ in range(2):
        code, _, err = stop(str(src), "--endpoint", sim.url, "--yes")
        assert code == 0, err
    reports = sorted(tmp_path.glob("bulkops-report-*.jsonl"))
    assert len(reports) == 2
    assert re.fullmatch(
        rf"bulkops-report-\d{{8}}T\d{{6}}\.\d{{3}}Z-{os.getpid()}\.jsonl", default_report_path()
    )


# -- 7: confirmation ----------------------------------------------------------------------------------------


def test_declined_confirmation_exits_3_and_sends_nothing(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answering no exits 3 (declined), sends nothing and leaves no report behind."""
    monkeypatch.setattr(command_stop, "_prompt_channel", lambda _p: (io.StringIO("n\n"), sys.stderr))
    report = tmp_path / "run.jsonl"
    code, _, err = stop(str(fleet(sim, tmp_path / "in.csv")), "--endpoint", sim.url, "--report", str(report))
    assert code == 3, err
    assert "Stop 10 rows of" in err and "declined: nothing sent" in err
    assert puts(sim) == 0 and not report.exists() and not Path(meta_path(str(report))).exists()


def test_confirmation_on_resume_counts_the_rows_left(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --resume the question counts the rows still to stop, not every row of INPUT."""
    monkeypatch.setattr(command_stop, "_prompt_channel", lambda _p: (io.StringIO("y\n"), sys.stderr))
    src = fleet(sim, tmp_path / "in.csv")
    report = tmp_path / "run.jsonl"
    partial_report(src, report, done=7)
    code, _, err = stop(str(src), "--endpoint", sim.url, "--report", str(report), "--resume")
    assert code == 0, err
    assert "Stop 3 rows of" in err and "(7 already done in" in err
    assert puts(sim) == 3


def test_confirmation_is_read_from_the_terminal_when_input_is_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """INPUT on a pipe, stderr on a terminal: the answer is read from the controlling terminal (/dev/tty)."""
    master, slave = os.openpty()
    try:
        monkeypatch.setattr(command_stop, "_TTY", os.ttyname(slave))
        monkeypatch.setattr(sys, "stdin", io.StringIO("rows on a pipe\n"))

        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        monkeypatch.setattr(sys, "stderr", Terminal())
        channel = command_stop._prompt_channel("-")
        assert channel is not None
        answers, prompts = channel
        os.write(master, b"y\n")
        assert answers.readline() == "y\n" and prompts is sys.stderr
        answers.close()
        monkeypatch.setattr(command_stop, "_TTY", "/nonexistent/tty")
        assert command_stop._prompt_channel("-") is None  # no terminal (cron, CI): nobody to ask
    finally:
        os.close(master)
        os.close(slave)


# -- 9: rates -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate"), [("10", 10.0), ("10/s", 10.0), ("2.5/sec", 2.5), ("600/min", 10.0), ("30/minute", 0.5)]
)
def test_rates_are_spelled_as_the_simulator_spells_them(text: str, rate: float) -> None:
    """--rate takes a number, N/s or N/min (the simulator's --rate-limit spelling)."""
    assert parse_rate(text) == rate


def test_rate_flags_and_rates_file_accept_per_second_and_per_minute(tmp_path: Path) -> None:
    """--rate 600/min, --global-rate 20/s and a rates file's 30/s reach the plan; 10/h is one error line."""
    src = tmp_path / "in.csv"
    src.write_text(f"project_id,id\n{'a' * 32},00000000-0000-4000-8000-000000000001\n"
                   f"{'b' * 32},00000000-0000-4000-8000-000000000002\n")  # fmt: skip
    rates = tmp_path / "rates.csv"
    rates.write_text(f"project_id,rate\n{'b' * 32},30/s\n")
    base = ("--dry-run", "--endpoint", "http://127.0.0.1:9")
    code, _, err = stop(
        str(src), *base, "--rate", "600/min", "--global-rate", "20/s", "--rates-file", str(rates)
    )
    assert code == 0, err
    assert f"{'a' * 32}: 1 row at 10/s" in err and f"{'b' * 32}: 1 row at 30/s" in err
    code, _, err = stop(str(src), *base, "--rate", "10/h")
    assert code == 2
    assert "a rate looks like 10, 10/s or 600/min, got '10/h'" in one_error_line(err)


# -- 8: the simulator, the example, the docs ----------------------------------------------------------------


def test_simulate_on_a_busy_port_is_one_line_and_leaves_the_csv_alone(tmp_path: Path) -> None:
    """`bulkops simulate` on a port in use: one error line, exit 2, no traceback, --write-csv untouched."""
    import socket
    import subprocess

    csv_path = tmp_path / "fleet.csv"
    csv_path.write_text("keep me\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "bulkops", "simulate", "--no-auth", "--port", str(port),
             "--write-csv", str(csv_path)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"bulkops: error: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another simulator? try --port 0 for a free port)"
    ]
    assert csv_path.read_text() == "keep me\n"


def test_runbook_example_on_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """examples/runbook_stop.py on SIGINT mid-run: in-flight rows finish, exit 130, no traceback."""
    import signal
    import subprocess
    import time

    from _reliability import REPO

    spec = InventorySpec(projects=1, instances_per_project=40, status_mix={"RUNNING": 1.0}, seed=8)
    config = SimulatorConfig(auth_enabled=False, inventory=spec, seed=8)
    src, report = tmp_path / "ids.csv", tmp_path / "r.jsonl"
    write_csv(spec, src)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_SDK_", "BULKOPS_"))}
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(run_simulator(config)) as s:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "examples" / "runbook_stop.py"), str(src), "--endpoint", s.url,
             "--report", str(report), "--retry", str(tmp_path / "retry.csv"), "--rate", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not (report.exists() and report.read_text().count("\n") >= 2):
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.02)
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: finished rows are in" in err
    written = report.read_text().splitlines()
    assert 2 <= len(written) < 40 and all(json.loads(line)["outcome"] == "accepted" for line in written)


def test_contract_documents_the_region_rule_and_poll_interval() -> None:
    """docs/contract.md names the SDK's region table (ap-southeast-1 is on .cn) and --poll-interval."""
    from _reliability import REPO

    from bulkops.cloud.regions import ENDPOINTS

    contract = (REPO / "docs" / "contract.md").read_text()
    assert "--poll-interval" in contract
    assert ENDPOINTS["ap-southeast-1"] in contract and "region table" in contract
