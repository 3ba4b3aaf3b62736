"""A `redis-server` of a test's own: a free port on 127.0.0.1, its own dir, AOF on (as in production,
`appendfsync everysec`), never the system's server. Tests that need one skip when it is missing."""

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis
from serverproc import free_port

REDIS_SERVER = shutil.which("redis-server")
READY_TIMEOUT_S = 10

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (Debian: apt-get install redis-server)"
)


class RedisServer:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self):
        command = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                pass
            assert self.proc.poll() is None, f"redis-server exited: {(self.dir / 'redis.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "redis-server did not answer PING"
            time.sleep(0.05)

    def stop(self):
        """SIGTERM: Redis writes its AOF and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def restart(self):
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    server = RedisServer(tmp_path / "redis")
    yield server
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(timeout=10)
