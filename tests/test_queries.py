"""The project's kernels (compute.queries.run_query over store.dataset.load_dataset) held to the
plain-Python reference (tests/reference.py), for every question of each data file, every query kind,
and for the state queries every state that has a value for the question.

Checked for each result: same keys in the same order, values equal to the last bit (the reference's
means are exact: Fractions, rounded once), every value a Python float (exactly `float`) that is finite.
"""

import csv
import importlib.util
import math
from collections import defaultdict

import pytest
from conftest import PROJECT_ROOT, SHARED_DATA_DIR
from reference import QUERY_NAMES, STATE_QUERY_NAMES, load_rows, reference


def _missing_kernel_module():
    for module in ("store.dataset", "compute.queries"):
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ModuleNotFoundError:
            return module
    return None


_MISSING = _missing_kernel_module()
if _MISSING is not None:
    pytest.skip(f"kernel module {_MISSING} does not exist yet", allow_module_level=True)

from compute.queries import run_query  # noqa: E402
from store.dataset import load_dataset  # noqa: E402

DATA_FILES = {
    "sample": PROJECT_ROOT / "data" / "sample.csv",
    "cdc-full": SHARED_DATA_DIR / "cdc-nutrition-physical-activity-obesity.csv",
    "assignment-rows": SHARED_DATA_DIR / "assignment-sample-rows.csv",
}

MAX_REPORTED = 25  # mismatches listed in full per test; the rest are counted


class Loaded:
    """One data file, loaded once per module for both the reference and the kernel."""

    def __init__(self, path):
        self.path = path
        self.rows = load_rows(path)
        self.by_question = defaultdict(list)  # question -> its rows (the reference filters on it anyway)
        self.states = set()
        for row in self.rows:
            self.by_question[row["Question"]].append(row)
            self.states.add(row["LocationDesc"])
        # Questions with at least one value, and for each the states with a value, both sorted.
        self.questions = sorted(q for q, rs in self.by_question.items() if any(r["Data_Value"] is not None for r in rs))
        self.states_with_value = {
            q: sorted({r["LocationDesc"] for r in self.by_question[q] if r["Data_Value"] is not None})
            for q in self.questions
        }
        self.dataset = load_dataset(path)

    def close(self):
        self.dataset.close()


@pytest.fixture(scope="module", params=list(DATA_FILES))
def loaded(request):
    path = DATA_FILES[request.param]
    if not path.exists():
        pytest.skip(f"data file {path} does not exist (yet)")
    data = Loaded(path)
    yield data
    data.close()


def compare(got, want, where=""):
    """Problems found comparing a kernel result with the reference one, as readable lines."""
    if type(got) is not dict:
        return [f"{where}: result is {type(got).__name__}, not dict: {got!r:.300}"]
    problems = []
    got_keys, want_keys = list(got), list(want)
    if got_keys != want_keys:
        missing = [k for k in want_keys if k not in got]
        extra = [k for k in got_keys if k not in want]
        if missing or extra:
            problems.append(
                f"{where}: keys differ: missing {missing[:10]} extra {extra[:10]}"
                f" ({len(missing)} missing, {len(extra)} extra)"
            )
        else:
            i = next(i for i, (a, b) in enumerate(zip(got_keys, want_keys, strict=False)) if a != b)
            a, b = got_keys[i], want_keys[i]
            problems.append(
                f"{where}: key order differs at position {i}: kernel has {a!r} ({got[a]!r}),"
                f" reference has {b!r} (kernel {got[b]!r}, reference {want[b]!r});"
                f" kernel order {got_keys[max(0, i - 2) : i + 3]}, reference order {want_keys[max(0, i - 2) : i + 3]}"
            )
    for key in want_keys:
        if key not in got:
            continue
        g, w = got[key], want[key]
        if isinstance(w, dict):
            problems += compare(g, w, f"{where}[{key!r}]")
        elif type(g) is not float:
            problems.append(
                f"{where}[{key!r}]: kernel value {g!r} is {type(g).__module__}.{type(g).__name__},"
                f" not a Python float (reference {w!r})"
            )
        elif not math.isfinite(g):
            problems.append(f"{where}[{key!r}]: kernel value {g!r} is not finite (reference {w!r})")
        elif g != w:
            problems.append(f"{where}[{key!r}]: kernel {g!r} != reference {w!r} (diff {g - w:.3g})")
    for key in got_keys:
        if type(key) is not str:
            problems.append(f"{where}: key {key!r} is {type(key).__name__}, not str")
    return problems


def _check_all(loaded, name):
    problems = []
    for question in loaded.questions:
        rows = loaded.by_question[question]
        states = loaded.states_with_value[question] if name in STATE_QUERY_NAMES else [None]
        for state in states:
            where = f"{name} question={question!r}" + (f" state={state!r}" if state is not None else "")
            want = reference(rows, name, question, state)
            try:
                got = run_query(loaded.dataset, name, question, state)
            except Exception as exc:  # report it with the others, do not stop at the first
                problems.append(f"{where}: kernel raised {type(exc).__name__}: {exc}")
                continue
            problems += compare(got, want, where)
    return problems


def _check_trend(loaded):
    problems = []
    for question in loaded.questions:
        rows = loaded.by_question[question]
        for state in [None, *loaded.states_with_value[question]]:
            where = f"trend question={question!r} state={state!r}"
            problems += compare(
                run_query(loaded.dataset, "trend", question, state),
                reference(rows, "trend", question, state),
                where,
            )
    return problems


@pytest.mark.parametrize("name", [*QUERY_NAMES, "trend"])
def test_kernel_matches_reference(loaded, name):
    assert loaded.questions, f"{loaded.path} holds no question with a value"
    problems = _check_trend(loaded) if name == "trend" else _check_all(loaded, name)
    shown = "\n".join(problems[:MAX_REPORTED])
    more = f"\n... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    assert not problems, f"{len(problems)} mismatch(es) in {loaded.path.name}:\n{shown}{more}"


def test_state_without_value_raises_lookup_error_real_file(loaded):
    pairs = [(q, s) for q in loaded.questions for s in sorted(loaded.states - set(loaded.states_with_value[q]))]
    if not pairs:
        pytest.skip(f"in {loaded.path.name} every state has a value for every question")
    problems = []
    for question, state in pairs:
        for name in STATE_QUERY_NAMES:
            try:
                got = run_query(loaded.dataset, name, question, state)
            except LookupError:
                continue
            except Exception as exc:
                problems.append(f"{name} {question!r} {state!r}: raised {type(exc).__name__}, not LookupError: {exc}")
            else:
                problems.append(f"{name} {question!r} {state!r}: returned {got!r:.200} instead of raising LookupError")
    assert not problems, "\n".join(problems[:MAX_REPORTED])


OBESITY = "Percent of adults aged 18 years and older who have obesity"  # lower is better
MUSCLE = "Percent of adults who engage in muscle-strengthening activities on 2 or more days a week"  # higher
EDGE_HEADER = [
    "YearStart",
    "YearEnd",
    "LocationDesc",
    "Question",
    "Data_Value",
    "Income",
    "StratificationCategory1",
    "Stratification1",
]
EDGE_ROWS = [
    # Guam: a row for OBESITY but no value; a value for MUSCLE.  Iowa: no OBESITY row at all.
    ["2011", "2011", "Ohio", OBESITY, "30.1", "", "Total", "Total"],
    ["2013", "2013", "Ohio", OBESITY, "31.4", "$15,000 - $24,999", "Income", "$15,000 - $24,999"],
    ["2013", "2013", "Ohio", OBESITY, "", "", "Age (years)", "18 - 24"],
    ["2015", "2015", "Ohio", OBESITY, "28.9", "", "Age (years)", "18 - 24"],
    ["2015", "2015", "New Jersey", OBESITY, "39.7", "", "", ""],
    ["2015", "2015", "New Jersey", OBESITY, "25.2", "", "Sex", "Female"],
    ["2011", "2011", "Guam", OBESITY, "", "", "Total", "Total"],
    ["2011", "2011", "Guam", MUSCLE, "20.0", "", "Total", "Total"],
    ["2011", "2011", "Iowa", MUSCLE, "27.5", "", "Sex", "Male"],
    ["2011", "2011", "Ohio", MUSCLE, "22.3", "", "Total", "Total"],
]


@pytest.fixture(scope="module")
def edge_file(tmp_path_factory):
    """A tiny file with a UTF-8 BOM, CRLF line ends, a quoted field with commas, an empty value,
    an empty category/segment, and states without a value for a question."""
    path = tmp_path_factory.mktemp("edge") / "edge.csv"
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(EDGE_HEADER)
        writer.writerows(EDGE_ROWS)
    dataset = load_dataset(path)
    yield path, load_rows(path), dataset
    dataset.close()


@pytest.mark.parametrize("name", STATE_QUERY_NAMES)
@pytest.mark.parametrize("state", ["Guam", "Iowa"])
def test_state_without_value_raises_lookup_error(edge_file, name, state):
    _, rows, dataset = edge_file
    with pytest.raises(LookupError):
        reference(rows, name, OBESITY, state)  # the reference agrees
    with pytest.raises(LookupError):
        run_query(dataset, name, OBESITY, state)


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_edge_file_matches_reference(edge_file, name):
    _, rows, dataset = edge_file
    problems = []
    for question in (OBESITY, MUSCLE):
        states = sorted({r["LocationDesc"] for r in rows if r["Question"] == question and r["Data_Value"] is not None})
        for state in states if name in STATE_QUERY_NAMES else [None]:
            where = f"{name} question={question!r} state={state!r}"
            got = run_query(dataset, name, question, state)
            problems += compare(got, reference(rows, name, question, state), where)
    assert not problems, "\n".join(problems)


TREND_ROWS = [
    ["2011", "2011", "Ohio", OBESITY, "30.0", "", "Total", "Total"],
    ["2011", "", "Ohio", OBESITY, "32.0", "", "Sex", "Male"],  # no YearEnd: the year of its YearStart
    ["2013", "2013", "Ohio", OBESITY, "", "", "Total", "Total"],  # no value: no 2013 for Ohio
    ["2011", "2012", "Ohio", OBESITY, "25.0", "", "Total", "Total"],  # spans two years
    ["", "", "Ohio", OBESITY, "99.0", "", "Total", "Total"],  # no YearStart: in no year
    ["2009", "2009", "Iowa", OBESITY, "20.0", "", "Total", "Total"],
    ["2013", "2013", "Iowa", OBESITY, "21.0", "", "Total", "Total"],
    ["2012", "2012", "Iowa", MUSCLE, "50.0", "", "Total", "Total"],
]


def test_trend_keys_years_and_spans_in_year_order(tmp_path):
    path = tmp_path / "trend.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([EDGE_HEADER, *TREND_ROWS])
    rows = load_rows(path)
    want_national = {"2009": 20.0, "2011": 31.0, "2011-2012": 25.0, "2013": 21.0}
    assert reference(rows, "trend", OBESITY) == want_national
    assert list(reference(rows, "trend", OBESITY)) == list(want_national)
    assert reference(rows, "trend", OBESITY, "Ohio") == {"2011": 31.0, "2011-2012": 25.0}
    dataset = load_dataset(path)
    try:
        for state in (None, "Ohio", "Iowa"):
            want = reference(rows, "trend", OBESITY, state)
            assert not compare(run_query(dataset, "trend", OBESITY, state), want, f"trend {state}")
        assert run_query(dataset, "trend", OBESITY, "Iowa", years=(2010, 2012)) == {}
        assert list(run_query(dataset, "trend", OBESITY, years=(2011, 2012))) == ["2011", "2011-2012"]
    finally:
        dataset.close()


def test_every_route_gives_a_state_the_same_mean_to_the_last_bit(loaded):
    """state_mean is the state's entry in states_mean, and state_diff_from_mean its entry in
    diff_from_mean: one mean whichever route asks (a float sum in another order would differ)."""
    problems = []
    for question in loaded.questions:
        means = run_query(loaded.dataset, "states_mean", question)
        diffs = run_query(loaded.dataset, "diff_from_mean", question)
        for state in loaded.states_with_value[question]:
            if run_query(loaded.dataset, "state_mean", question, state) != {state: means[state]}:
                problems.append(f"state_mean {question!r} {state!r}")
            if run_query(loaded.dataset, "state_diff_from_mean", question, state) != {state: diffs[state]}:
                problems.append(f"state_diff_from_mean {question!r} {state!r}")
    assert not problems, f"{len(problems)} differ, e.g. {problems[:5]}"
