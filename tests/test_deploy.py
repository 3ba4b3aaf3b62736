"""deploy/: HAProxy (Debian's haproxy) in front of two nodes and one Redis, driven end to end."""

import json
import os
import shutil
import subprocess
import time

import pytest
from redisproc import redis_server  # noqa: F401  (a fixture)
from serverproc import PROJECT_ROOT, Server, free_port
from test_process import mixed_queries

HAPROXY = shutil.which("haproxy")
READY_TIMEOUT_S = 20

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (Debian: apt-get install haproxy)"),
]


def through(port):
    """A client of `port` with Server's helpers (call, submit, result, submit_all)."""
    client = Server.__new__(Server)
    client.port = port
    return client


@pytest.fixture
def haproxy(tmp_path):
    started = []

    def start(node_a, node_b):
        port = free_port()
        environment = {
            **os.environ,
            "LESTATS_LISTEN": f"127.0.0.1:{port}",
            "LESTATS_NODE_A": f"127.0.0.1:{node_a.port}",
            "LESTATS_NODE_B": f"127.0.0.1:{node_b.port}",
        }
        log = open(tmp_path / "haproxy.log", "w+")
        proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(PROJECT_ROOT / "deploy" / "haproxy.cfg")],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append((proc, log))
        client = through(port)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert proc.poll() is None, (tmp_path / "haproxy.log").read_text()
            try:
                if client.call("GET", "/api/num_jobs", timeout=2)[0] == 200:
                    return client
            except OSError:
                pass
            assert time.monotonic() < deadline, "haproxy did not pass a request within the time"
            time.sleep(0.1)

    yield start
    for proc, log in started:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_haproxy_spreads_jobs_over_two_nodes_and_every_job_reads_back(servers, tmp_path, redis_server, haproxy):  # noqa: F811
    nodes = [
        servers(tmp_path / name, workers=1, args=("--store", redis_server.url, "--node", name))
        for name in ("node-a", "node-b")
    ]
    proxy = haproxy(*nodes)
    seen = set()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while seen != {"node-a", "node-b"}:  # both pass their health check and take requests
        seen.add(proxy.get_json("/api/health")["node"])
        assert time.monotonic() < deadline, f"only {seen} answered through haproxy"

    ids = proxy.submit_all(mixed_queries(200))
    assert len(set(ids)) == 200
    for job_id in ids:
        body = proxy.result(job_id)  # each poll may reach either node
        assert json.loads(body)["status"] == "done", job_id
        for node in nodes:
            assert node.call("GET", f"/api/get_results/{job_id}") == (200, body), job_id
    assert len(proxy.get_json("/api/jobs")["data"]) == 200
