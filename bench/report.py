"""What every benchmark prints and writes: percentiles, plain-text tables and one JSON result file.

Each result file carries the date, the machine and the git commit, because a figure without them
cannot be compared with a later run (and figures from this 2-core box only compare with each other).
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from load import nearest_rank

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = PROJECT_ROOT / "bench" / "out"


def summary(samples: Sequence[float]) -> dict[str, float | int]:
    """Median, p90, p99 (nearest rank, as bench/load.py) and the sample count."""
    ordered = sorted(samples)
    return {
        "median": statistics.median(ordered),
        "p90": nearest_rank(ordered, 90),
        "p99": nearest_rank(ordered, 99),
        "n": len(ordered),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either side is missing or the denominator is zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def fmt(value: float | int | str | None, digits: int = 1) -> str:
    """A table cell: thousands separated, a fixed number of decimals, 'n/a' for a missing value."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{fraction:.0%}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], labels: int = 1) -> str:
    """A plain aligned table: the first `labels` columns left-aligned (names), the rest right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(cell).ljust(width) if index < labels else str(cell).rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *map(line, rows)])


def git(*args: str) -> str | None:
    """A git command's output in the project, or None where git or the repository is missing."""
    try:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine() -> dict[str, Any]:
    """Where and when the figures were taken."""
    commit, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": commit,
        "uncommitted_changes": bool(dirty) if dirty is not None else None,
        "load_average_at_end": os.getloadavg(),
        "note": "client and server on the same machine, which other work may share",
    }


def write_result(path: Path, args: dict[str, Any], results: Any) -> Path:
    """Write {"machine", "args", "results"} as indented JSON and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "args": args, "results": results}
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2, default=str) + b"\n")
    return path
