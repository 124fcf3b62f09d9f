"""Processes and measurements: servers pinned to CPU 0, clients pinned to CPU 1, peak RSS per client.

    Server        a server subprocess (the simulator, or the fast responder) and its URL, read from the
                  first line it prints; stopped with SIGTERM, killed if it lingers
    run_client    one client subprocess, waited for with `os.wait4`, whose rusage gives that process's
                  own peak RSS; wall time measured around it; bounded by a timeout
    make_csv      the input CSV, written by `bulkops simulate --csv-only` (same seed: ids the simulator knows)
    redis_server  a redis-server of our own on a free 127.0.0.1 port (no persistence), pinned to CPU 0
    report_metrics  what a bulkops report says: rows, span, latency percentiles, timeline per project

Everything binds 127.0.0.1; every wait has a timeout; every process started here is stopped here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.baselines.common import percentile

AK = "BENCHAK0000000000001"
SK = "bench-secret-key-0000000000000000001"
SERVER_CPU = 0
CLIENT_CPU = 1
PYTHON = sys.executable
BULKOPS = [PYTHON, "-m", "bulkops"]


def bench_env() -> dict[str, str]:
    """The environment of every process: credentials for signing, no user site noise."""
    env = dict(os.environ)
    env.update({"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK, "PYTHONWARNINGS": "ignore"})
    for name in ("BULKOPS_AUTH_TOKEN", "HUAWEICLOUD_SDK_SECURITY_TOKEN", "BULKOPS_ENDPOINT"):
        env.pop(name, None)
    return env


def cpus() -> set[int]:
    """The CPUs this process may run on."""
    return set(os.sched_getaffinity(0))


def pin(pid: int, cpu: int) -> bool:
    """Pin a process to one CPU, if this machine has it; False when it could not."""
    if cpu not in cpus():
        return False
    with contextlib.suppress(OSError):
        os.sched_setaffinity(pid, {cpu})
        return True
    return False


@dataclass
class Server:
    """A server subprocess and the URL it announced."""

    proc: subprocess.Popen[bytes]
    url: str
    name: str

    def stats(self) -> dict[str, Any] | None:
        """The simulator's /_sim/stats counters (None for a server without them)."""
        try:
            with urllib.request.urlopen(self.url + "/_sim/stats", timeout=5) as resp:
                data: dict[str, Any] = json.load(resp)
                return data
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def server(cmd: Sequence[str], name: str, *, log: Path, timeout: float = 30.0) -> Iterator[Server]:
    """Start `cmd`, pinned to CPU 0; yield it once it printed its URL; stop it on exit."""
    with open(log, "wb") as err:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=err, env=bench_env())
        pin(proc.pid, SERVER_CPU)
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline().decode() if ready else ""
            if "http://" not in line:
                raise RuntimeError(f"{name} did not start: {line!r} (see {log})")
            srv = Server(proc, line.split()[-1].strip(), name)
            yield srv
        finally:
            Server(proc, "", name).stop()
            if proc.stdout is not None:
                proc.stdout.close()


def simulator(args: Sequence[str], *, log: Path) -> contextlib.AbstractContextManager[Server]:
    """The bulkops simulator (`bulkops simulate --port 0 ...`), authentication on (the bench AK/SK)."""
    return server([*BULKOPS, "simulate", "--port", "0", "--stop-delay", "3600", *args], "simulator", log=log)


def fast_server(latency: float, *, log: Path) -> contextlib.AbstractContextManager[Server]:
    """The benchmark-only responder (benchmarks/fastserver.py)."""
    cmd = [PYTHON, "-m", "benchmarks.fastserver", "--latency", str(latency), "--max-seconds", "3600"]
    return server(cmd, "fastserver", log=log)


REDIS_BINARY = os.environ.get("BULKOPS_REDIS_SERVER", "/usr/bin/redis-server")


def redis_binary() -> str | None:
    """The redis-server to run (BULKOPS_REDIS_SERVER, Debian's, or one on PATH); None when there is none."""
    return REDIS_BINARY if os.access(REDIS_BINARY, os.X_OK) else shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return b"PONG" in sock.recv(100)
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(workdir: Path, *, timeout: float = 10.0) -> Iterator[str]:
    """A fresh redis-server (127.0.0.1, free port, no persistence, cwd `workdir`, pinned to CPU 0 with the
    other servers); yields its URL once it answers PING; killed on exit. As tests/_redis.py starts it."""
    binary = redis_binary()
    if binary is None:
        raise RuntimeError("redis-server not found: apt-get install redis-server")
    port = _free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pin(proc.pid, SERVER_CPU)
        deadline = time.monotonic() + timeout
        while not _redis_answers(port):
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer within {timeout:g} s")
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@dataclass
class ClientRun:
    """One client process: exit code, wall seconds, its own peak RSS, its output."""

    name: str
    returncode: int
    wall: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    extra: dict[str, Any] = field(default_factory=dict)

    def json_line(self) -> dict[str, Any]:
        """The last JSON line the client printed (the baselines' result)."""
        for line in reversed(self.stdout.splitlines()):
            if line.startswith("{"):
                data: dict[str, Any] = json.loads(line)
                return data
        raise RuntimeError(f"{self.name} printed no result (exit {self.returncode}): {self.stderr[-2000:]}")


def run_client(cmd: Sequence[str], name: str, *, workdir: Path, timeout: float) -> ClientRun:
    """Run a client pinned to CPU 1 and wait for it (bounded); peak RSS from its own rusage."""
    out_path, err_path = workdir / f"{name}.out", workdir / f"{name}.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=bench_env(), cwd=workdir)
        pin(proc.pid, CLIENT_CPU)
        deadline = started + timeout
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    return ClientRun(
        name,
        proc.returncode,
        wall,
        usage.ru_maxrss / 1024 if usage is not None else 0.0,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
    )


def make_csv(path: Path, *, projects: int, per_project: int, seed: int, order: str = "project") -> list[str]:
    """Write the simulator's matching CSV; returns the project ids in order of appearance."""
    cmd = [
        *BULKOPS, "simulate", "--csv-only", "--seed", str(seed), "--projects", str(projects),
        "--instances-per-project", str(per_project), "--status-mix", "RUNNING=1",
        "--write-csv", str(path), "--csv-order", order,
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, env=bench_env(), timeout=300)
    seen: dict[str, None] = {}
    with open(path, encoding="utf-8") as fh:
        fh.readline()
        for line in fh:
            seen.setdefault(line.split(",", 1)[0], None)
            if len(seen) >= projects:
                break
    return list(seen)


def trim_csv(src: Path, dst: Path, counts: dict[str, int]) -> None:
    """Copy at most counts[project] rows of each project from `src` to `dst` (order kept)."""
    left = dict(counts)
    with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
        fout.write(fin.readline())
        for line in fin:
            project = line.split(",", 1)[0]
            if left.get(project, 0) > 0:
                left[project] -= 1
                fout.write(line)


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def report_metrics(path: Path) -> dict[str, Any]:
    """Figures from a bulkops JSON-lines report.

    `span_s` runs from the first request sent (finished_at minus elapsed_ms of the earliest row) to the
    last answer; latency is per row (first send to final answer, retries included); the timeline counts
    finished rows per project per second of the span.
    """
    starts: list[float] = []
    ends: list[float] = []
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    per_project: dict[str, list[float]] = defaultdict(list)
    attempts = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            end = _epoch(rec["finished_at"])
            elapsed = rec["elapsed_ms"] / 1000
            starts.append(end - elapsed)
            ends.append(end)
            latencies.append(elapsed)
            outcomes[rec["outcome"]] += 1
            attempts += rec["attempts"]
            per_project[rec["project_id"]].append(end)
    if not ends:
        return {"rows": 0}
    t0, t1 = min(starts), max(ends)
    span = max(t1 - t0, 1e-3)
    seconds = int(span) + 1
    timeline: dict[str, list[int]] = {}
    for project, times in sorted(per_project.items()):
        counts = [0] * seconds
        for t in times:
            counts[min(seconds - 1, int(t - t0))] += 1
        timeline[project] = counts
    latencies.sort()
    return {
        "rows": len(ends),
        "attempts": attempts,
        "outcomes": dict(outcomes),
        "span_s": span,
        "rps": len(ends) / span,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "timeline": timeline,
    }


def bulkops_stop(
    csv: Path,
    url: str,
    report: Path,
    *,
    rate: float,
    concurrency: int,
    log_level: str = "warning",
    slow_start: bool = True,
    operation: str = "stop",
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of a bulkops run, as a user types it (`log_level` debug: the rate changes too).
    `operation`: the command (`stop`, `start`, `reboot`), which takes the same options.

    `slow_start=False` is the user who knows `--rate` is the real limit (`--no-slow-start`): the latency-
    and CPU-bound scenarios, which compare the engine at full speed with clients that have no slow start.
    `extra`: more options, appended (`--redis URL`).
    """
    return [
        *BULKOPS, operation, str(csv), "--endpoint", url, "--rate", f"{rate:g}",
        "--concurrency", str(concurrency), "--report", str(report), "--yes", "--no-progress",
        "--log-level", log_level, "--log-format", "json", *([] if slow_start else ["--no-slow-start"]),
        *extra,
    ]  # fmt: skip


def throttled_from_summary(stderr: str) -> int | None:
    """The 429 count from bulkops' summary line `requests: N (R retries, T throttled)`."""
    import re

    match = re.search(r"requests: (\d+) \((\d+) retries, (\d+) throttled\)", stderr)
    return int(match[3]) if match else None


def requests_from_summary(stderr: str) -> int | None:
    """The request count from bulkops' summary line."""
    import re

    match = re.search(r"requests: (\d+) \(", stderr)
    return int(match[1]) if match else None
