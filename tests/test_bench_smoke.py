"""The benchmarks under bench/ still run: each script, on the bundled 18.6k sample, with tiny
repetition counts and durations, exits 0 and writes a result file of the expected shape.

Nothing here measures or asserts performance (that is for a person reading the figures on a quiet
machine). pandas, DuckDB, Flask and locust are bench-only dependencies: the kernel benchmark runs
with our engine alone, and the tests that need Flask or locust skip when it is not installed.
"""

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT
from reference import QUERY_NAMES

BENCH = PROJECT_ROOT / "bench"
SCRIPT_TIMEOUT_S = 120
QUERY_KINDS = set(QUERY_NAMES)


def run_script(*args, timeout=SCRIPT_TIMEOUT_S):
    """Run a bench script with this interpreter from the project root; fail with its output."""
    done = subprocess.run(
        [sys.executable, *map(str, args)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def results_of(path):
    payload = json.loads(path.read_text())
    assert payload["machine"]["cpus"] >= 1
    return payload["results"]


def need(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is a bench-only dependency (bench/requirements.txt) and is not installed")


def test_kernels_ours_only(tmp_path):
    out = tmp_path / "kernels.json"
    stdout = run_script(
        BENCH / "kernels.py", "--sizes", "18.6k", "--engines", "ours", "--reps", "3", "--idle-wait", "0", "--json", out
    )
    sample = results_of(out)["18.6k"]
    assert sample["rows"] == 18_650 and sample["cells"] > 0
    assert set(sample["queries_us"]) == QUERY_KINDS
    assert all(timing["ours"]["n"] == 3 and timing["ours"]["median"] > 0 for timing in sample["queries_us"].values())
    assert "ours" in sample["load_s"] and "mean_by_category" in stdout


def test_scaling_ours_and_nowork(tmp_path):
    out = tmp_path / "scaling.json"
    run_script(
        BENCH / "scaling.py",
        "--sizes",
        "18.6k",
        "--workers",
        "1",
        "--clients",
        "4",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--original-sizes",
        "",
        "--nowork-sizes",
        "18.6k",
        "--idle-wait",
        "0",
        "--server-args",
        "--poll-grace-ms 0",
        "--json",
        out,
    )
    results = results_of(out)
    assert [(run["server"], run["exit_code"], run["errors"]) for run in results["runs"]] == [
        ("ours --poll-grace-ms 0", 0, 0),
        ("nowork", 0, 0),
    ]
    assert all(run["jobs"] > 0 and run["startup_s"] > 0 and run["cpu_us_per_job"] > 0 for run in results["runs"])
    assert [item["versus"] for item in results["ratios"]] == ["nowork"]
    assert results["ratios"][0]["cpu_us_per_job"] > 0


def test_profile_names_where_the_cpu_went(tmp_path):
    if shutil.which("py-spy") is None:
        pytest.skip("py-spy is a bench-only dependency (bench/requirements.txt) and is not installed")
    out = tmp_path / "profile"
    text = run_script(BENCH / "profile.py", "--clients", "4", "--duration", "2", "--out", out)
    # The hot routes are answered on the connection (server/fastpath.py), not by aiohttp's web layer.
    assert "fast path (parse, reply)" in text, text
    assert out.with_suffix(".raw.txt").stat().st_size > 0


def test_scaling_original(tmp_path):
    need("flask")
    out = tmp_path / "scaling.json"
    run_script(
        BENCH / "scaling.py",
        "--sizes",
        "",
        "--original-sizes",
        "18.6k",
        "--original-duration",
        "1",
        "--nowork-sizes",
        "",
        "--clients",
        "4",
        "--warmup",
        "0",
        "--idle-wait",
        "0",
        "--json",
        out,
    )
    (run,) = results_of(out)["runs"]
    assert (run["server"], run["exit_code"], run["errors"]) == ("original", 0, 0) and run["jobs"] > 0


def test_memory(tmp_path):
    out = tmp_path / "memory.json"
    run_script(
        BENCH / "memory.py", "--sizes", "18.6k", "--workers", "1,2", "--clients", "4", "--duration", "1", "--json", out
    )
    results = results_of(out)
    assert [(run["workers"], run["exit_code"]) for run in results["runs"]] == [(1, 0), (2, 0)]
    for run in results["runs"]:
        for phase in ("ready", "after_load"):
            shot = run[phase]
            assert shot["workers_seen"] == run["workers"] and shot["shared_bytes"] > 0
            assert shot["by_role_kb"]["server"] > 0 and shot["by_role_kb"]["workers"] > 0
            assert shot["pss_kb"] == sum(shot["by_role_kb"].values())
    assert [item["size"] for item in results["per_extra_worker"]] == ["18.6k"]


def test_locustfile_reports_jobs_only(monkeypatch):
    need("locust")
    monkeypatch.syspath_prepend(str(BENCH))
    from harness import Server

    with Server("ours", PROJECT_ROOT / "data" / "sample.csv", workers=1) as server:
        stdout = run_script(
            "-m",
            "locust",
            "-f",
            BENCH / "locustfile.py",
            "--headless",
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "3s",
            "--host",
            server.url,
            "--json",
            "--skip-log",
            "--exit-code-on-error",
            "1",
        )
    assert server.exit_code == 0
    entries = json.loads(stdout)
    assert entries and {entry["method"] for entry in entries} == {"JOB"}
    assert {entry["name"] for entry in entries} <= QUERY_KINDS
    assert sum(entry["num_requests"] for entry in entries) > 0
    assert sum(entry["num_failures"] for entry in entries) == 0


def test_scaleout_runs_each_kind_of_setup_side_by_side(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    out = tmp_path / "scaleout.json"
    stdout = run_script(
        BENCH / "scaleout.py",
        *("--frontends", "1", "--nodes", "1", "--nowork", "2", "--repeat", "1", "--duration", "1"),
        *("--warmup", "0.3", "--idle-wait", "0", "--clients", "4", "--json", out),
    )
    summary = results_of(out)["summary"]
    assert [item["label"] for item in summary] == [
        "embedded, 1 front-end",
        "Redis, 1 node x 1 front-end",
        "aiohttp doing no work, 2 processes",
    ]
    assert all(item["jobs_per_s"] > 0 and item["node_cpu_ms_per_job"] > 0 for item in summary), summary
    assert [item["errors"] for item in summary[:2]] == [0, 0]
    assert [item["serial_cpu_ms_per_job"] is None for item in summary] == [False, False, True]
    assert "projected jobs/s" in stdout


@pytest.mark.slow
def test_fsync_compares_every_setting(tmp_path):
    out = tmp_path / "fsync.json"
    stdout = run_script(
        BENCH / "fsync.py", "--repeat", "1", "--duration", "1", "--warmup", "0.2", "--idle-wait", "0", "--json", out
    )
    medians = results_of(out)["medians"]
    assert [item["mode"] for item in medians] == ["always", "batch", "off"]
    assert all(item["errors"] == 0 and item["jobs_per_s"] > 0 for item in medians), medians
    assert [item["jobs_per_s_vs_off"] for item in medians][-1] == 1.0
    assert "jobs/s vs off" in stdout


@pytest.mark.slow
def test_soak_samples_every_figure_and_stops_the_server_cleanly(tmp_path):
    """A short soak: a figure may look like growing in 20 s (the journal before any compaction), and
    a request may fail around a worker killed every 6 s on a loaded machine (the server's faults
    are tested in test_faults.py), so only those may fail it; the load, the samples and the clean
    stop must all be there."""
    out = tmp_path / "soak.json"
    args = ["--minutes", "0.35", "--interval", "2", "--kill-every", "6", "--clients", "2", "--json", out]
    done = subprocess.run(
        [sys.executable, str(BENCH / "soak.py"), *map(str, args)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )
    assert done.returncode in (0, 1), done.stderr
    if done.returncode:
        last_line = done.stderr.strip().splitlines()[-1]
        problems = last_line.split("; ")
        assert all(p.endswith((" grows", " failed requests")) for p in problems), done.stderr
    results = results_of(out)
    figures = {verdict["figure"] for verdict in results["verdicts"]}
    assert {"server.rss_mb", "workers.fds", "manager.threads", "journal.mb", "dev_shm.files"} <= figures
    assert len(results["samples"]) >= 5
    assert results["counts"]["query"] > 0 and results["counts"]["worker killed"] >= 1, results["counts"]
    assert "exit code after SIGTERM: 0" in done.stdout
