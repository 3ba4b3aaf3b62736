"""Shared machinery of the benchmarks: data files by size, server processes, their memory (PSS),
and how busy the shared CPUs are.

Every server runs in its own session, so its whole tree (workers, manager, forkserver, resource
tracker) is one process group that we started: stopping sends SIGTERM to the server's pid alone (it
must drain and exit 0 by itself), and only if that fails is the group we made killed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

from load import Query, valid_queries
from report import OUT_DIR, PROJECT_ROOT

PYTHON = sys.executable
HOST = "127.0.0.1"
READY_PATH = "/api/num_jobs"
GENERATED_SEED = 2024

# A size name -> (file, rows to generate into it, or None for a file that must already exist).
SIZES: dict[str, tuple[Path, int | None]] = {
    "18.6k": (PROJECT_ROOT / "data" / "sample.csv", None),
    "106k": (PROJECT_ROOT.parent / "shared" / "data" / "cdc-nutrition-physical-activity-obesity.csv", None),
    "500k": (OUT_DIR / "cdc-500k.csv", 500_000),
    "5m": (OUT_DIR / "cdc-5m.csv", 5_000_000),
}


def parse_sizes(text: str) -> list[str]:
    """A comma-separated list of size names ('' for none), refused early if a name is unknown."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SIZES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown size(s) {', '.join(unknown)}; known: {', '.join(SIZES)}")
    return names


def parse_counts(text: str) -> list[int]:
    """A comma-separated list of positive integers, e.g. worker counts."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: need at least one count, each >= 1")
    return counts


def data_file(size: str) -> Path:
    """The CSV of a size, generated with data/generate.py (seed 2024) the first time it is asked for."""
    path, rows = SIZES[size]
    if path.exists():
        return path
    if rows is None:
        raise FileNotFoundError(f"{path}: the {size} data set is missing")
    print(f"generating {rows:,} rows into {path} ...", file=sys.stderr, flush=True)
    partial = path.with_name(path.name + ".part")  # renamed when complete: an interrupted run leaves no "size"
    subprocess.run(
        [
            PYTHON,
            str(PROJECT_ROOT / "data" / "generate.py"),
            "--rows",
            str(rows),
            "--seed",
            str(GENERATED_SEED),
            "--out",
            str(partial),
        ],
        check=True,
    )
    partial.replace(path)
    return path


@cache
def queries_for(size: str) -> list[Query]:
    """bench/load.py's valid queries of a size's CSV, read once per size (a minute at 5M rows)."""
    return valid_queries(data_file(size))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def get_json(url: str, timeout: float = 5.0) -> Any:
    """GET a JSON reply from a local server."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class ServerError(RuntimeError):
    """A server that did not start, or did not stop cleanly."""


@dataclass
class Server:
    """One server process under test, started by `start()` and stopped by `stop()`.

    `kind` is "ours", "original" or "nowork"; `startup_s` is process start -> first 200 on
    GET /api/num_jobs; `exit_code` is set by `stop()`.
    """

    kind: str
    data: Path
    workers: int = 2
    extra_args: Sequence[str] = ()
    port: int = field(default_factory=free_port)
    startup_s: float | None = None
    exit_code: int | None = None
    _process: subprocess.Popen[bytes] | None = None
    _scratch: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server is not started"
        return self._process.pid

    @property
    def state_dir(self) -> Path:
        """Our server's --state-dir, inside the scratch directory of a started server."""
        assert self._scratch is not None, "the server is not started"
        return Path(self._scratch.name) / "state"

    def command(self, scratch: Path) -> list[str]:
        """The command line; state and results go to a scratch directory removed at stop."""
        common = ["--data", str(self.data), "--port", str(self.port)]
        if self.kind == "ours":
            return [
                PYTHON,
                "-m",
                "server",
                *common,
                "--host",
                HOST,
                "--workers",
                str(self.workers),
                "--state-dir",
                str(scratch / "state"),
                *self.extra_args,
            ]
        if self.kind == "original":
            return [
                PYTHON,
                "bench/original.py",
                *common,
                "--host",
                HOST,
                "--threads",
                str(self.workers),
                "--results-dir",
                str(scratch / "results"),
            ]
        if self.kind == "nowork":
            return [PYTHON, "bench/nowork_server.py", *common, *self.extra_args]
        raise ValueError(f"unknown server kind {self.kind!r}")

    def start(self, ready_timeout: float = 900.0) -> float:
        """Start the process and wait until it answers; returns the start-up time in seconds."""
        self._scratch = tempfile.TemporaryDirectory(prefix=f"bench-{self.kind}-")
        scratch = Path(self._scratch.name)
        log = (scratch / "server.log").open("wb")
        started = time.perf_counter()
        self._process = subprocess.Popen(
            self.command(scratch),
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = started + ready_timeout
        while time.perf_counter() < deadline:
            if self._process.poll() is not None:
                self._fail(f"{self.kind} exited with {self._process.returncode} while starting")
            try:
                with urllib.request.urlopen(self.url + READY_PATH, timeout=1.0) as response:
                    if response.status == 200:
                        self.startup_s = time.perf_counter() - started
                        return self.startup_s
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        self._fail(f"{self.kind} not ready after {ready_timeout:.0f} s")

    def _fail(self, reason: str) -> NoReturn:
        """Kill what is left, remove the scratch directory and raise, with the server's last words."""
        tail = self.log_tail()
        self.kill()
        raise ServerError(f"{reason}:\n{tail}")

    def log_tail(self, lines: int = 20) -> str:
        if self._scratch is None:
            return ""
        path = Path(self._scratch.name) / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM the server alone and wait for it (and its children) to exit; returns its exit code."""
        process = self._process
        assert process is not None, "the server is not started"
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            self.exit_code = process.wait(timeout)
            if not wait_group_empty(process.pid, timeout=10.0):
                raise ServerError(f"{self.kind} exited but left processes in its group")
        except (subprocess.TimeoutExpired, ServerError):
            self.kill()
            raise
        finally:
            self._cleanup()
        return self.exit_code

    def kill(self) -> None:
        """Last resort: SIGKILL the process group this Server created."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.returncode is None:
            if exc_info[0] is None:
                self.stop()
            else:
                self.kill()


def check_exits(servers: Sequence[Server]) -> list[str]:
    """One line per server whose exit code after SIGTERM was not 0."""
    return [
        f"{server.kind} on {server.data.name} exited with {server.exit_code}"
        for server in servers
        if server.exit_code != 0
    ]


# ---------------------------------------------------------------------------------------------
# Processes and their memory, from /proc


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None for a gone process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def wait_group_empty(pgid: int, timeout: float) -> bool:
    """Wait until no live process is left in a process group; False on time-out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = [
            pid for pid in _all_pids() if (fields := _stat_fields(pid)) and fields[0] != "Z" and int(fields[2]) == pgid
        ]
        if not members:
            return True
        time.sleep(0.05)
    return False


def descendants(root: int) -> list[int]:
    """`root` and every live process below it (by parent pid), in pid order."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(pid)
    found, frontier = [root], [root]
    while frontier:
        frontier = [child for parent in frontier for child in children.get(parent, [])]
        found += frontier
    return sorted(found)


def smaps_rollup(pid: int) -> dict[str, int]:
    """The kB figures of /proc/<pid>/smaps_rollup (Rss, Pss, Pss_Anon, Pss_Shmem, ...); {} if gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    figures = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            figures[key] = int(rest.split()[0])
    return figures


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group: a
    server's whole tree (workers, manager, forkserver), since every server runs in its own group."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields and int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy(interval: float = 1.0) -> float:
    """The fraction of all CPUs busy over the next `interval` seconds (0.0 to 1.0)."""
    busy_before, total_before = _cpu_times()
    time.sleep(interval)
    busy_after, total_after = _cpu_times()
    return (busy_after - busy_before) / max(total_after - total_before, 1)


def wait_until_idle(timeout: float, max_busy: float = 0.15) -> float:
    """Wait (up to `timeout` s) until other work leaves the CPUs at most `max_busy` busy, because
    this box is shared and a benchmark beside someone's test run measures both. Returns the last
    busy fraction seen, recorded with each figure so a noisy one can be spotted."""
    deadline = time.monotonic() + timeout
    busy = cpu_busy(0.2)
    while busy > max_busy and time.monotonic() < deadline:
        busy = cpu_busy(1.0)
    if busy > max_busy:
        print(f"  note: CPUs still {busy:.0%} busy with other work; measuring anyway", file=sys.stderr, flush=True)
    return round(busy, 3)


def _own_cpu_s(root: int | None) -> float:
    """CPU seconds used so far by this process and by the live processes of `root`'s tree."""
    times = os.times()
    total = times.user + times.system
    if root is not None:
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in descendants(root):
            if fields := _stat_fields(pid):
                total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


class OtherWork:
    """Measures, over a `with` block, the share of all CPUs busy with work that is not ours (this
    process, and the tree of the server under test): the noise a figure was taken beside.

    A server process that exits inside the block would count as other work; none does here.
    """

    def __init__(self, root: int | None = None) -> None:
        self.root = root
        self.fraction: float | None = None

    def __enter__(self) -> OtherWork:
        self._started = (time.monotonic(), _cpu_times()[0], _own_cpu_s(self.root))
        return self

    def __exit__(self, *exc_info: object) -> None:
        started, busy_jiffies, own_s = self._started
        elapsed = time.monotonic() - started
        busy_s = (_cpu_times()[0] - busy_jiffies) / os.sysconf("SC_CLK_TCK")
        other_s = max(busy_s - (_own_cpu_s(self.root) - own_s), 0.0)
        self.fraction = round(min(other_s / (elapsed * (os.cpu_count() or 1)), 1.0), 3) if elapsed > 0 else None
