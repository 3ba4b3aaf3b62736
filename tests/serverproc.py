"""A `python -m server` process for tests: start it on a free port, talk to it, stop or kill it,
and check what it leaves in /dev/shm. Used by the process, OpenAPI and browser tests."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHM = Path("/dev/shm")
READY_TIMEOUT_S = 30
EXIT_TIMEOUT_S = 30
RESULT_TIMEOUT_S = 20


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_members(pgid):
    """Pids of live (non-zombie) processes in process group `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def mapped_shm_files(pids=None):
    """Names of /dev/shm files mapped by `pids` (default: every process we can read)."""
    names = set()
    maps = [Path(f"/proc/{pid}/maps") for pid in pids] if pids is not None else Path("/proc").glob("[0-9]*/maps")
    for path in maps:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            where = line.find("/dev/shm/")
            if where >= 0 and not line.endswith("(deleted)"):
                names.add(line[where + len("/dev/shm/") :])
    return names


def semaphores():
    """Named POSIX semaphores (multiprocessing's `sem.mp-*`, or whatever prefix the server gives them)."""
    return {path.name for path in SHM.glob("sem.*")}


def segments_of(pid):
    """/dev/shm entries named for process `pid`: its data segments `lestats_<pid>_*`, and its
    semaphores if it names them after itself (`sem.lestats_<pid>_*`)."""
    return sorted(path.name for path in SHM.iterdir() if path.name.removeprefix("sem.").startswith(f"lestats_{pid}_"))


class Server:
    """One `python -m server` process and what is needed to talk to it."""

    def __init__(self, state_dir, data=None, workers=2, args=(), env=None):
        """`args`: more command-line options; `env`: more environment variables."""
        self.port = free_port()
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.semaphores_before = semaphores()
        self.stdout = open(self.state_dir.parent / f"server-{self.port}.out", "w+")
        self.stderr = open(self.state_dir.parent / f"server-{self.port}.err", "w+")
        command = [
            sys.executable,
            "-m",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--state-dir",
            str(self.state_dir),
            "--workers",
            str(workers),
            *args,
        ]
        if data is not None:
            command += ["--data", str(data)]
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("LESTATS_ADMIN_TOKEN", "TP_NUM_OF_THREADS")
        }
        environment.update(env or {})
        self.proc = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdout=self.stdout,
            stderr=self.stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=environment,
        )
        self.pid = self.proc.pid
        self.crash_semaphores = set()  # semaphores a SIGKILL may leave behind, removed at teardown
        self.log_path = (
            Path(args[list(args).index("--log-file") + 1]) if "--log-file" in args else self.state_dir / "webserver.log"
        )

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def output(self):
        texts = []
        for stream in (self.stdout, self.stderr):
            stream.flush()
            stream.seek(0)
            texts.append(stream.read())
        return "\n".join(texts)

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the server exited with {self.proc.returncode} before it was ready:\n{self.output()}")
            try:
                status, _ = self.call("GET", "/api/num_jobs", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the server was not ready within {READY_TIMEOUT_S} s:\n{self.output()}")

    def fetch(self, method, path, body=None, headers=None, timeout=10):
        """(status, headers, body bytes) of one request; `body` is JSON-encoded unless it is bytes."""
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, method=method, headers=headers or {}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def call(self, method, path, body=None, timeout=10):
        """(status, body bytes); `body` is JSON-encoded unless it is bytes."""
        status, _, reply = self.fetch(method, path, body, timeout=timeout)
        return status, reply

    def get_json(self, path):
        status, body = self.call("GET", path)
        assert status == 200, f"GET {path}: {status} {body!r}"
        return json.loads(body)

    def submit(self, query, body):
        status, reply = self.call("POST", f"/api/{query}", body)
        assert status == 200, f"POST /api/{query} {body}: {status} {reply!r}"
        return json.loads(reply)["job_id"]

    def result(self, job_id, timeout=RESULT_TIMEOUT_S):
        """The raw get_results body once the job is no longer running."""
        deadline = time.monotonic() + timeout
        while True:
            status, body = self.call("GET", f"/api/get_results/{job_id}")
            assert status == 200, f"get_results/{job_id}: {status} {body!r}"
            if json.loads(body) != {"status": "running"}:
                return body
            assert time.monotonic() < deadline, f"{job_id} still running after {timeout} s"
            time.sleep(0.01)

    def submit_all(self, pairs):
        """Submit every (query, body) at once over concurrent connections; job ids in order."""

        async def post_all():
            async with aiohttp.ClientSession(f"http://127.0.0.1:{self.port}") as session:

                async def post(query, body):
                    async with session.post(f"/api/{query}", json=body) as response:
                        text = await response.text()
                        assert response.status == 200, f"POST /api/{query}: {response.status} {text}"
                        return json.loads(text)["job_id"]

                return await asyncio.gather(*(post(query, body) for query, body in pairs))

        return asyncio.run(post_all())

    def stop(self, signum=signal.SIGTERM):
        """Send `signum` to the server process only; its exit status."""
        os.kill(self.pid, signum)
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit within {EXIT_TIMEOUT_S} s of signal {signum}:\n{self.output()}")

    def stop_group(self, signum=signal.SIGTERM):
        """Send `signum` to every process of the server's group at once, as systemd
        (KillMode=control-group) and `kill -TERM -- -PGID` do; the server's exit status."""
        os.killpg(self.pid, signum)
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit within {EXIT_TIMEOUT_S} s of {signum} to its group:\n{self.output()}")

    def error_lines(self):
        """The ERROR and CRITICAL lines of its log."""
        return [line for line in self.log_path.read_text().splitlines() if " ERROR " in line or " CRITICAL " in line]

    def assert_released(self):
        """After a clean exit: no process of its group, no segment of its pid, no new semaphore."""
        deadline = time.monotonic() + 10
        while (left := group_members(self.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left, f"processes of the server's group still alive after it exited: {left}"
        assert segments_of(self.pid) == [], f"shared memory left in /dev/shm: {segments_of(self.pid)}"
        # Semaphores that appeared since the server started and that no live process maps (another
        # program's are mapped by it) were the server's and are leaked.
        # (Semaphores named for another server, sem.lestats_<pid>_*, are that server's business.)
        leaked = {
            name
            for name in (semaphores() - self.semaphores_before) - mapped_shm_files()
            if not name.startswith("sem.lestats_") or name.startswith(f"sem.lestats_{self.pid}_")
        }
        assert not leaked, f"semaphores left in /dev/shm: {sorted(leaked)}"

    def kill_group(self):
        """SIGKILL the whole process tree; remember the semaphores it mapped (they leak)."""
        members = group_members(self.pid)
        self.crash_semaphores = {name for name in mapped_shm_files(members) if name.startswith("sem.")}
        os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=EXIT_TIMEOUT_S)
        deadline = time.monotonic() + 10
        while group_members(self.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def cleanup(self):
        """Teardown: stop it if it still runs, kill what is left of its group, close its output."""
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGCONT)  # in case a test left it stopped
                os.kill(self.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)
            if group_members(self.pid):
                os.killpg(self.pid, signal.SIGKILL)
            if self.proc.poll() is None:
                self.proc.wait(timeout=10)
        finally:
            self.stdout.close()
            self.stderr.close()
