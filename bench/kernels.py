"""Kernel benchmark: the 9 queries on our cell arrays versus pandas groupby and DuckDB SQL.

Per data size, each engine loads the CSV once (timed once: our load also reduces rows to cells),
its answers are checked against ours (every question, and a seeded sample of (question, state)
pairs; 1e-9 relative, any difference stops the run), and then each query is timed per call, many
times, cycling over those inputs: median and p90 per query per engine, and pandas/ours, duckdb/ours.
Everything runs in this one process, one engine at a time, so no engine competes with another.
"other CPU" is the share of the CPUs that other work (not this process) used while a query was timed.

    python bench/kernels.py [--sizes 18.6k,106k,500k,5m] [--engines ours,pandas,duckdb]
                            [--reps 300] [--budget 2] [--pairs 12] [--json bench/out/kernels.json]
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from engines import ENGINES, Engine, Ours, Result
from harness import OtherWork, data_file, parse_sizes, wait_until_idle
from report import OUT_DIR, PROJECT_ROOT, fmt, percent, ratio, summary, table, write_result

sys.path.insert(0, str(PROJECT_ROOT))

from compute.queries import EXTENSIONS, KERNELS, NEEDS_STATE

REL_TOL = 1e-9
ABS_TOL = 1e-12  # differences of two means can be ~0, where a relative bound alone means nothing
WARMUP_CALLS = 3

Inputs = list[tuple[str, str | None]]


class Mismatch(AssertionError):
    """An engine's answer differs from ours: the benchmark is void and stops."""


def compare(ours: Result, theirs: Result, where: str = "") -> None:
    """Same keys, values within 1e-9 relative, same order except among tied values."""
    if len(ours) != len(theirs):
        raise Mismatch(f"{where}: {len(theirs)} entries, ours has {len(ours)}")
    for (our_key, our_value), (key, value) in zip(ours.items(), theirs.items(), strict=True):
        if isinstance(our_value, dict):
            compare(our_value, value, f"{where}[{our_key}]")
            continue
        if not math.isclose(our_value, value, rel_tol=REL_TOL, abs_tol=ABS_TOL):
            raise Mismatch(f"{where}: {key!r} = {value!r}, ours {our_key!r} = {our_value!r}")
        tied = key in ours and math.isclose(ours[key], our_value, rel_tol=REL_TOL, abs_tol=ABS_TOL)
        if key != our_key and not tied:
            raise Mismatch(f"{where}: {key!r} where ours has {our_key!r}")


def query_inputs(ours: Ours, pairs: int, seed: int) -> tuple[Inputs, Inputs]:
    """Every question with a value, and a seeded sample of answered (question, state) pairs."""
    catalog = ours.catalog
    answered = sorted(catalog.answered)
    questions = sorted({catalog.questions[question] for question, _ in answered})
    chosen = random.Random(seed).sample(answered, min(pairs, len(answered)))
    return [(question, None) for question in questions], [
        (catalog.questions[question], catalog.states[state]) for question, state in sorted(chosen)
    ]


def time_calls(engine: Engine, kind: str, inputs: Inputs, reps: int, budget_s: float) -> list[float]:
    """Per-call times in microseconds: `reps` calls cycling over `inputs`, fewer if `budget_s` runs out
    (but at least 5), after a few untimed warm-up calls."""
    for question, state in inputs[:WARMUP_CALLS]:
        engine.query(kind, question, state)
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    for rep in range(reps):
        question, state = inputs[rep % len(inputs)]
        started = time.perf_counter_ns()
        engine.query(kind, question, state)
        samples.append((time.perf_counter_ns() - started) / 1000)
        if len(samples) >= 5 and time.perf_counter() > deadline:
            break
    return samples


def load(engine: Engine, path: Path) -> float:
    """Load once; the seconds it took."""
    gc.collect()
    started = time.perf_counter()
    engine.load(path)
    seconds = time.perf_counter() - started
    print(f"  {engine.name}: loaded in {seconds:.2f} s", file=sys.stderr, flush=True)
    return seconds


def check(ours: Ours, engine: Engine, kind: str, inputs: Inputs, size: str) -> None:
    """Raise Mismatch unless `engine` answers every input as ours does."""
    for question, state in inputs:
        compare(
            ours.query(kind, question, state),
            engine.query(kind, question, state),
            f"{size} {engine.name} {kind}({question!r}, {state!r})",
        )


def bench_size(size: str, engine_names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Load, check and time every engine on one data size (ours is always loaded: it is the reference)."""
    path = data_file(size)
    ours = Ours()
    load_s = {"ours": load(ours, path)}
    others: list[Engine] = [ENGINES[name]() for name in engine_names if name != "ours"]
    for engine in others:
        load_s[engine.name] = load(engine, path)
    timed: list[Engine] = ([ours] if "ours" in engine_names else []) + others
    by_question, by_pair = query_inputs(ours, args.pairs, args.seed)

    queries: dict[str, Any] = {}
    busy_before: dict[str, float] = {}
    other_during: dict[str, float | None] = {}
    for kind in [kind for kind in KERNELS if kind not in EXTENSIONS]:  # the original API's nine
        inputs = by_pair if kind in NEEDS_STATE else by_question
        for engine in others:
            check(ours, engine, kind, inputs, size)
        busy_before[kind] = wait_until_idle(args.idle_wait)
        with OtherWork() as other:
            queries[kind] = {
                engine.name: summary(time_calls(engine, kind, inputs, args.reps, args.budget)) for engine in timed
            }
        other_during[kind] = other.fraction
        print(f"  {kind}: checked and timed", file=sys.stderr, flush=True)
    return {
        "file": str(path),
        "rows": ours.catalog.rows,
        "cells": ours.cells,
        "checked_inputs": {"questions": len(by_question), "pairs": len(by_pair)},
        "load_s": load_s,
        "queries_us": queries,
        "cpu_busy_before": busy_before,
        "other_cpu_during": other_during,
    }


def render(size: str, result: dict[str, Any], engine_names: list[str]) -> str:
    """Per-query medians (p90) per engine, and each other engine's median over ours."""
    others = [name for name in engine_names if name != "ours"]
    headers = [
        "query",
        *[f"{name} med (p90) us" for name in engine_names],
        *[f"{name}/ours" for name in others],
        "other CPU",
    ]
    rows = []
    for kind, by_engine in result["queries_us"].items():
        cells = [f"{fmt(by_engine[name]['median'])} ({fmt(by_engine[name]['p90'])})" for name in engine_names]
        ratios = [fmt(ratio(by_engine[name]["median"], by_engine.get("ours", {}).get("median")), 2) for name in others]
        rows.append([kind, *cells, *ratios, percent(result["other_cpu_during"][kind])])
    loads = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in result["load_s"].items())
    return f"== {size}: {result['rows']:,} rows -> {result['cells']:,} cells; load: {loads}\n{table(headers, rows)}\n"


def render_summary(results: dict[str, Any], engine_names: list[str]) -> str:
    """One line per size: rows, cells, load times, and the geometric mean over the 9 queries of
    each engine's median over ours."""
    others = [name for name in engine_names if name != "ours"]
    headers = [
        "size",
        "rows",
        "cells",
        *[f"load {name} s" for name in ["ours", *others]],
        *[f"geomean {name}/ours" for name in others if "ours" in engine_names],
    ]
    rows = []
    for size, result in results.items():
        ratios = []
        if "ours" in engine_names:
            for name in others:
                per_query = [ratio(q[name]["median"], q["ours"]["median"]) for q in result["queries_us"].values()]
                ratios.append(fmt(statistics.geometric_mean(per_query), 1))
        loads = [fmt(result["load_s"][name], 2) for name in ["ours", *others]]
        rows.append([size, fmt(result["rows"]), fmt(result["cells"]), *loads, *ratios])
    return table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=parse_sizes, default="18.6k,106k,500k,5m", help="comma-separated sizes")
    parser.add_argument("--engines", default="ours,pandas,duckdb", help="comma-separated, from ours,pandas,duckdb")
    parser.add_argument("--reps", type=int, default=300, help="timed calls per query per engine (at most)")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per query per engine before stopping early")
    parser.add_argument("--pairs", type=int, default=12, help="(question, state) pairs for the state queries")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=30.0,
        help="seconds to wait, before timing each query, for other work to leave the CPUs idle",
    )
    parser.add_argument("--json", type=Path, default=OUT_DIR / "kernels.json", help="result file")
    args = parser.parse_args()
    engine_names = [name.strip() for name in args.engines.split(",") if name.strip()]
    if not engine_names or any(name not in ENGINES for name in engine_names):
        parser.error(f"--engines: choose from {', '.join(ENGINES)}")
    if args.reps < 1 or args.pairs < 1 or args.budget <= 0:
        parser.error("need reps >= 1, pairs >= 1, budget > 0")

    results: dict[str, Any] = {}
    for size in args.sizes:
        print(f"{size}: loading {', '.join(engine_names)} ...", file=sys.stderr, flush=True)
        try:
            results[size] = bench_size(size, engine_names, args)
        except Mismatch as error:
            sys.exit(f"RESULTS DIFFER, benchmark void: {error}")
        print(render(size, results[size], engine_names), flush=True)
    print(render_summary(results, engine_names))
    path = write_result(args.json, vars(args) | {"engines": engine_names}, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
