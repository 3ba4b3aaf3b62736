"""Shared paths for the tests.

PROJECT_ROOT is the project (/work/main); SHARED_DATA_DIR is ../shared/data beside it, which holds the
real CDC files used by tests and benchmarks (never copied into the project).
"""

import sys
from pathlib import Path

import pytest
from serverproc import SHM, Server, mapped_shm_files, segments_of

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"

# So that `store`, `compute`, ... import under a plain `pytest` run too, not only `python -m pytest`.
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    return SHARED_DATA_DIR


@pytest.fixture
def servers():
    """start(state_dir, wait=True, **options) -> a Server (ready unless wait=False); every one is
    stopped at teardown, and what a killed one left in /dev/shm is removed."""
    started = []

    def start(state_dir, wait=True, **options):
        server = Server(state_dir, **options)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.cleanup()
    still_mapped = mapped_shm_files()
    for server in started:
        for name in (*server.crash_semaphores, *segments_of(server.pid)):
            if name not in still_mapped:
                (SHM / name).unlink(missing_ok=True)


# How the suite is organised: every test file is one kind of test, and the kind is a marker, so
# `-m unit`, `-m "not slow"` and the like pick a part of it. A new file must be given a kind here.
TEST_KINDS = {
    "test_queries.py": "unit",
    "test_exactsum.py": "unit",
    "test_loading.py": "unit",
    "test_generate.py": "unit",
    "test_reference.py": "unit",
    "test_ledger.py": "unit",
    "test_channel.py": "unit",
    "test_hostile_units.py": "unit",
    "test_wide.py": "unit",
    "test_answers.py": "unit",
    "test_ledger_fsync.py": "unit",
    "test_supervise.py": "unit",
    "test_api.py": "api",
    "test_fastpath.py": "api",
    "test_process.py": "process",
    "test_openapi.py": "process",
    "test_faults.py": "faults",
    "test_hostile.py": "faults",
    "test_stop.py": "faults",
    "test_frontends.py": "process",
    "test_redis_store.py": "process",
    "test_deploy.py": "process",
    "test_browser.py": "browser",
    "test_bench_smoke.py": "bench",
}
SLOW_KINDS = {"process", "faults", "browser", "bench"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = TEST_KINDS.get(item.path.name)
        if kind is None:
            raise pytest.UsageError(f"{item.path.name} has no kind: add it to TEST_KINDS in tests/conftest.py")
        item.add_marker(kind)
        if kind in SLOW_KINDS:
            item.add_marker("slow")
