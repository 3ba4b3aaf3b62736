"""Shared paths for the tests.

PROJECT_ROOT is the project (/work/main); SHARED_DATA_DIR is ../shared/data beside it, which holds the
real CDC files used by tests and benchmarks (never copied into the project).
"""

import sys
from pathlib import Path

import pytest

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
