"""Files whose cell keys cannot fit one int64 (issue 9): the kernels must still match the reference.

10,000 distinct questions, states, strata and years make a mixed-radix key space of about 1e20,
past int64; a wrapped key once answered a global_mean of 4616.17 where the file says 5.0.
"""

import csv
import random

import numpy as np
import pytest
from reference import CSV_COLUMNS, QUERY_NAMES, STATE_QUERY_NAMES, load_rows, reference
from test_queries import compare

import store.cells
from compute.queries import run_query
from store.dataset import load_dataset

OBESITY = "Percent of adults aged 18 years and older who have obesity"
WIDE = 10_000


def wide_rows(count, seed=9):
    """Every row a new question, state, stratum and year, plus rows that share a question and state
    (so means over several cells are checked too) and one known-direction question."""
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        year = 1000 + n % 9000
        rows.append([year, year, f"S{n:05d}", f"Q{n:05d}", "5.0", f"C{n:05d}", f"G{n:05d}"])
    for n in range(0, count, 97):
        value = f"{rng.uniform(0, 100):.3f}"
        rows.append([2000 + n % 20, 2000 + n % 20, f"S{(n + 1) % count:05d}", f"Q{n:05d}", value, "Sex", "Male"])
        rows.append([2001, 2002, f"S{n:05d}", OBESITY, value, f"C{n:05d}", f"G{n:05d}"])
    return rows


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    path = tmp_path_factory.mktemp("wide") / "wide.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(wide_rows(WIDE))
    dataset = load_dataset(path)
    yield load_rows(path), dataset
    dataset.close()


def test_the_key_space_is_past_int64(wide):
    _, dataset = wide
    catalog = dataset.catalog
    space = len(catalog.questions) * len(catalog.states) * (len(catalog.strata) + 1) * 9000 * 9000
    assert space > np.iinfo(np.int64).max


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_wide_file_matches_reference(wide, name):
    rows, dataset = wide
    by_question = {}
    for row in rows:
        by_question.setdefault(row["Question"], []).append(row)
    questions = [OBESITY, *sorted(by_question)[:: WIDE // 60]]
    if name in ("best5", "worst5"):
        questions = [OBESITY]
    problems = []
    for question in questions:
        question_rows = by_question[question]
        states = sorted({row["LocationDesc"] for row in question_rows})
        for state in states[:5] if name in STATE_QUERY_NAMES else [None]:
            where = f"{name} {question!r} {state!r}"
            got = run_query(dataset, name, question, state)
            problems += compare(got, reference(question_rows, name, question, state), where)
    assert not problems, "\n".join(problems[:20])


def test_wide_file_answers_exactly_the_pairs_it_holds(wide):
    rows, dataset = wide
    catalog = dataset.catalog
    want = {(row["Question"], row["LocationDesc"]) for row in rows if row["Data_Value"] is not None}
    got = {(catalog.questions[q], catalog.states[s]) for q, s in catalog.answered}
    assert got == want


def test_sorting_groups_exactly_as_the_key(monkeypatch, project_root):
    """The fallback, forced on the bundled sample, builds the same cells as the key path."""
    by_key = load_dataset(project_root / "data" / "sample.csv")
    monkeypatch.setattr(store.cells, "KEY_LIMIT", 1)
    by_sorting = load_dataset(project_root / "data" / "sample.csv")
    assert by_key.catalog == by_sorting.catalog
    assert by_key.arrays.keys() == by_sorting.arrays.keys()
    for name, array in by_key.arrays.items():
        assert np.array_equal(array, by_sorting.arrays[name]), name
