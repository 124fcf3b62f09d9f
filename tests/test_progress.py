"""The progress display: what it draws, how often, that log lines never tear it, and only on a TTY."""

from __future__ import annotations

import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from fcntl import ioctl
from pathlib import Path

import anyio
import pytest
from anyio.from_thread import start_blocking_portal

from bulkops.cli import runner
from bulkops.cli.progress import CLEAR, Progress, progress_observer, redraw_while_idle, render_line
from bulkops.logs import LineWriter
from bulkops.models import Outcome, Result
from bulkops.simulator import InventorySpec, Simulator, SimulatorConfig, run_simulator, write_csv
from bulkops.summary import RunStats

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """A clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def stats_with(n: int, outcome: Outcome = Outcome.ACCEPTED) -> RunStats:
    """RunStats that counted n results of one outcome."""
    stats = RunStats()
    for i in range(n):
        stats.count(Result(i + 1, "p", "i", outcome))
    return stats


def make(total: int | None, width: int = 100) -> tuple[Progress, io.StringIO, Clock, LineWriter]:
    """A display on a fake clock, writing to a string, with a log writer to wrap."""
    clock = Clock()
    out = io.StringIO()
    log_writer = LineWriter(out)
    progress = Progress(total, stream=out, log_writer=log_writer, clock=clock, width=lambda: width)
    return progress, out, clock, log_writer


def test_line_shows_done_total_rate_eta_outcomes_and_traffic() -> None:
    """The line reads rows done of total, percent, rate, ETA, counts per outcome, 429s and retries."""
    stats = stats_with(250)
    stats.count(Result(251, "p", "i", Outcome.FAILED))
    stats.throttled, stats.retries = 7, 9
    line = render_line(251, 1000, 50.0, stats, 100, 5.0)
    assert line.startswith("251/1000 25% [")
    assert "50.0/s ETA 15s" in line
    assert "accepted 250 failed 1" in line and "429s 7 retries 9" in line


def test_line_shows_polls_while_wait_has_no_row_done_yet() -> None:
    """With --wait, rows end only once STOPPED: the line shows the polls sent, not a frozen 0/N."""
    stats = RunStats()
    stats.polls_sent = 12
    line = render_line(0, 100, None, stats, 160, 4.0)
    assert line.startswith("0/100 0%") and "polls 12" in line


def test_line_shows_projects_slowed_by_429s_and_the_slowest_rate() -> None:
    """When 429s taught rates below --rate, the line says how many projects and the slowest one's rate."""
    stats = stats_with(10)
    stats.learned_rates.update({"0123456789abcdef": 4.85, "fedcba9876543210": 48.5})
    line = render_line(10, 100, 5.0, stats, 160, 2.0)
    assert "slowed 2 (01234567 4.85/s)" in line


@pytest.mark.parametrize("width", [20, 40, 60, 80, 100, 200])
def test_line_fits_the_terminal_width(width: int) -> None:
    """However many outcomes, the line is at least three columns short of the width (room for ^C)."""
    stats = RunStats()
    for outcome in Outcome:
        stats.outcomes[outcome.value] = 123_456
    stats.throttled = stats.retries = 99_999
    line = render_line(999_999, 1_000_000, 12345.6, stats, width, 1000.0)
    assert len(line) <= max(10, width - 3)
    assert line.startswith("999999/1000000")


def test_standard_input_shows_no_total() -> None:
    """Without a total (stdin) the line counts rows and elapsed time, with no percentage or ETA."""
    line = render_line(42, None, 10.0, stats_with(42), 100, 65.0)
    assert line.startswith("42 rows 10.0/s 1m05s elapsed")
    assert "%" not in line and "ETA" not in line and "[" not in line


def test_redraws_at_most_ten_times_a_second() -> None:
    """Many batches within 0.1 s cause one redraw; the next one comes once 0.1 s has passed."""
    progress, out, clock, _ = make(1000)
    for n in range(1, 51):
        clock.now += 0.001
        progress.on_results([], stats_with(n))
    assert out.getvalue().count(CLEAR) == 1
    clock.now += 0.1
    progress.on_results([], stats_with(51))
    assert out.getvalue().count(CLEAR) == 2
    assert out.getvalue().endswith("51/1000 5%" + out.getvalue().split("51/1000 5%")[-1])


def test_log_line_clears_the_bar_prints_and_redraws() -> None:
    """A log line appears on a line of its own, the bar is cleared before it and redrawn after it."""
    progress, out, _, log_writer = make(10)
    progress.on_results([], stats_with(3))
    out.truncate(0)
    out.seek(0)
    log_writer.write_line("bulkops.stop.retry attempt=2")
    text = out.getvalue()
    assert text.startswith(CLEAR + "bulkops.stop.retry attempt=2\n" + CLEAR + "3/10 30%")
    assert "\n" not in text.split("attempt=2\n", 1)[1]


def test_close_clears_the_line_and_restores_plain_logging() -> None:
    """close() leaves the cursor at the start of an empty line; later logs and redraws print plainly."""
    progress, out, _, log_writer = make(10)
    progress.on_results([], stats_with(10))
    progress.close(stats_with(10))
    assert out.getvalue().endswith(CLEAR)
    before = out.getvalue()
    progress.redraw()
    progress.close(stats_with(10))
    log_writer.write_line("after")
    assert out.getvalue() == before + "after\n"


def test_idle_tick_redraws_when_no_results_arrive() -> None:
    """While no results arrive (all projects waiting on limits) the line is still refreshed."""
    progress, out, clock, _ = make(10)
    progress.on_results([], stats_with(1))
    clock.now += 0.2
    progress.idle_tick()
    assert out.getvalue().count(CLEAR) == 1
    clock.now += 0.3
    progress.idle_tick()
    assert out.getvalue().count(CLEAR) == 2


@pytest.mark.anyio
async def test_idle_redraws_run_as_a_task_on_the_event_loop() -> None:
    """The idle redraws are a task on the run's event loop (no thread), and stop when the run's results do."""
    assert progress_observer(None, stream=io.StringIO()).background is not None
    progress, out, clock, _ = make(10)
    threads = threading.active_count()
    drawn_on: set[threading.Thread] = set()
    real_write = out.write

    def write(text: str) -> int:
        drawn_on.add(threading.current_thread())
        return real_write(text)

    out.write = write  # type: ignore[method-assign]
    async with runner._alongside(lambda: redraw_while_idle(progress, 0.005)):
        assert threading.active_count() == threads
        for _ in range(2):
            clock.now += 1.0  # idle for a second: the next tick redraws, the ones after it do not
            await anyio.sleep(0.1)
    assert out.getvalue().count(CLEAR) == 2
    assert drawn_on == {threading.current_thread()}
    clock.now += 1.0
    await anyio.sleep(0.05)
    assert out.getvalue().count(CLEAR) == 2  # cancelled with the block: no redraw after it


def test_import_bulkops_and_help_do_not_load_progress() -> None:
    """`import bulkops` and `bulkops --help` never import the progress module (start-up stays fast)."""
    code = (
        "import sys, bulkops; a = 'bulkops.cli.progress' in sys.modules; "
        "from click.testing import CliRunner; from bulkops.cli.main import main; "
        "CliRunner().invoke(main, ['--help']); CliRunner().invoke(main, ['stop', '--help']); "
        "print(a, 'bulkops.cli.progress' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulator with a mild per-project limit, so a run lasts a moment and sees some 429s."""
    config = SimulatorConfig(
        auth_enabled=False,
        inventory=InventorySpec(projects=2, instances_per_project=40, status_mix={"RUNNING": 1.0}, seed=5),
        latency=0.005,
    )
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(run_simulator(config)) as s:
        yield s


def _run_stop(sim: Simulator, tmp_path: Path, *, tty: bool) -> tuple[int, str]:
    """`bulkops stop` as a subprocess with stderr on a 100-column pseudo-terminal or a pipe."""
    src = tmp_path / "in.csv"
    write_csv(sim.config.inventory, src)
    env = {**os.environ, "HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "", "BULKOPS_AUTH_TOKEN": ""}
    env.pop("COLUMNS", None)
    args = [
        sys.executable, "-m", "bulkops", "stop", str(src), "--endpoint", sim.url, "--yes",
        "--rate", "20", "--report", str(tmp_path / "r.jsonl"), "--log-level", "info", "--log-format", "json",
    ]  # fmt: skip
    if not tty:
        proc = subprocess.run(
            args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False
        )
        return proc.returncode, proc.stderr
    master, slave = pty.openpty()
    ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc2 = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env, cwd=ROOT
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc2.wait(timeout=60), b"".join(chunks).decode()


def test_on_a_terminal_the_bar_is_drawn_and_ends_before_the_summary(sim: Simulator, tmp_path: Path) -> None:
    """On a TTY the bar is redrawn in place, log lines stand on their own lines, and the summary is clean."""
    code, text = _run_stop(sim, tmp_path, tty=True)
    assert code == 0, text
    text = text.replace("\r\n", "\n")
    assert "\x1b[K" in text and re.search(r"\d+/80 \d+%", text)
    summary_at = text.index("bulkops stop: 80 rows")
    assert text[:summary_at].endswith(CLEAR)  # the bar was cleared right before the summary
    for line in text.splitlines():
        last = line.rsplit(CLEAR, 1)[-1]
        if last.startswith("{"):  # a JSON log line was never glued to a bar
            assert line.endswith("}") and last.startswith('{"')
    bars = [seg for seg in re.split(r"\r\x1b\[K|\n", text) if re.match(r"\d+/80 ", seg)]
    assert bars and all(len(seg) <= 97 for seg in bars)


def test_off_a_terminal_nothing_of_it_is_written(sim: Simulator, tmp_path: Path) -> None:
    """With stderr a pipe, no progress is drawn: stderr holds only log lines and the summary."""
    code, text = _run_stop(sim, tmp_path, tty=False)
    assert code == 0, text
    assert "\r" not in text and "\x1b" not in text
    assert "bulkops stop: 80 rows" in text
