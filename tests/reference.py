"""A plain-Python reference implementation of the 9 queries of API.md and the `trend` extension.

Deliberately simple and row-by-row (csv module only, no numpy) so that it is obviously right; the
tests hold the vectorised kernels (compute.queries.run_query) to it.  Speed is not a goal.

    rows = load_rows(path)                      # list of dicts, one per CSV row
    data = reference(rows, name, question, state=None)   # the `data` object of API.md
"""

import csv
import statistics

REQUIRED_COLUMNS = (
    "LocationDesc",
    "Question",
    "Data_Value",
    "StratificationCategory1",
    "Stratification1",
)

# Exact question text, as in the CDC file.  Two of them differ only in a few words.
QUESTIONS_BEST_IS_MIN = (
    "Percent of adults aged 18 years and older who have an overweight classification",  # Q037
    "Percent of adults aged 18 years and older who have obesity",  # Q036
    "Percent of adults who engage in no leisure-time physical activity",  # Q047
    "Percent of adults who report consuming fruit less than one time daily",  # Q018
    "Percent of adults who report consuming vegetables less than one time daily",  # Q019
)

QUESTIONS_BEST_IS_MAX = (
    # Q043
    "Percent of adults who achieve at least 150 minutes a week of moderate-intensity aerobic "
    "physical activity or 75 minutes a week of vigorous-intensity aerobic activity "
    "(or an equivalent combination)",
    # Q044
    "Percent of adults who achieve at least 150 minutes a week of moderate-intensity aerobic "
    "physical activity or 75 minutes a week of vigorous-intensity aerobic physical activity "
    "and engage in muscle-strengthening activities on 2 or more days a week",
    # Q045
    "Percent of adults who achieve at least 300 minutes a week of moderate-intensity aerobic "
    "physical activity or 150 minutes a week of vigorous-intensity aerobic activity "
    "(or an equivalent combination)",
    # Q046
    "Percent of adults who engage in muscle-strengthening activities on 2 or more days a week",
)

# The columns the service reads, in the order tests write them into the CSV files they make.
CSV_COLUMNS = (
    "YearStart",
    "YearEnd",
    "LocationDesc",
    "Question",
    "Data_Value",
    "StratificationCategory1",
    "Stratification1",
)

QUERY_NAMES = (
    "states_mean",
    "state_mean",
    "best5",
    "worst5",
    "global_mean",
    "diff_from_mean",
    "state_diff_from_mean",
    "mean_by_category",
    "state_mean_by_category",
)

STATE_QUERY_NAMES = ("state_mean", "state_diff_from_mean", "state_mean_by_category")


def load_rows(path):
    """Read a CDC CSV into a list of dicts holding the five required columns.

    Columns are found by header name; a UTF-8 BOM and CRLF line ends are tolerated.
    `Data_Value` becomes a float, or None when the field is empty. `YearStart` and `YearEnd` are kept
    as an int, or None when the field (or the column) is empty.
    """
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for column in REQUIRED_COLUMNS:
            if column not in header:
                raise ValueError(f"{path}: missing column {column!r}")
        for record in reader:
            text = record["Data_Value"].strip()
            rows.append(
                {
                    "LocationDesc": record["LocationDesc"],
                    "Question": record["Question"],
                    "Data_Value": float(text) if text != "" else None,
                    "StratificationCategory1": record["StratificationCategory1"],
                    "Stratification1": record["Stratification1"],
                    "YearStart": _year(record.get("YearStart")),
                    "YearEnd": _year(record.get("YearEnd")),
                }
            )
    return rows


def _year(text):
    text = (text or "").strip()
    return int(float(text)) if text else None


def _mean(values):
    # The exact mean of the float64 values, rounded once: statistics.mean adds them as exact
    # fractions (and is several times faster than summing Fraction objects).
    return statistics.mean(values)


def _values_by_state(rows, question):
    """{state: [values]} in alphabetical state order, only states with at least one value."""
    groups = {}
    for row in rows:
        if row["Question"] == question and row["Data_Value"] is not None:
            groups.setdefault(row["LocationDesc"], []).append(row["Data_Value"])
    return {state: groups[state] for state in sorted(groups)}


def _states_means(rows, question):
    """{state: mean} in alphabetical state order."""
    return {state: _mean(values) for state, values in _values_by_state(rows, question).items()}


def _global_mean(rows, question):
    values = [r["Data_Value"] for r in rows if r["Question"] == question and r["Data_Value"] is not None]
    if not values:
        raise LookupError(f"no value for question {question!r}")
    return _mean(values)


def _state_mean(rows, question, state):
    means = _states_means(rows, question)
    if state not in means:
        raise LookupError(f"no value for state {state!r} and question {question!r}")
    return means[state]


def _sorted_by_value(means, descending):
    # `means` is in alphabetical state order; sorted() is stable (also with reverse=True),
    # so ties stay in alphabetical order.
    return dict(sorted(means.items(), key=lambda item: item[1], reverse=descending))


def _lower_is_better(question):
    if question in QUESTIONS_BEST_IS_MIN:
        return True
    if question in QUESTIONS_BEST_IS_MAX:
        return False
    raise ValueError(f"unknown best direction for question {question!r}")


def _category_values(rows, question, state=None):
    """{(state, category, segment): [values]}, rows with an empty category or segment left out."""
    groups = {}
    for row in rows:
        if row["Question"] != question or row["Data_Value"] is None:
            continue
        if state is not None and row["LocationDesc"] != state:
            continue
        category = row["StratificationCategory1"]
        segment = row["Stratification1"]
        if category == "" or segment == "":
            continue
        key = (row["LocationDesc"], category, segment)
        groups.setdefault(key, []).append(row["Data_Value"])
    return groups


def reference(rows, name, question, state=None):
    """The `data` object of API.md for query `name`. Raises LookupError for a state (of a state
    query) that has no value for the question, ValueError for an unknown query name."""
    if name == "states_mean":
        return _sorted_by_value(_states_means(rows, question), descending=False)

    if name == "state_mean":
        return {state: _state_mean(rows, question, state)}

    if name in ("best5", "worst5"):
        lower_is_better = _lower_is_better(question)
        descending = not lower_is_better if name == "best5" else lower_is_better
        ordered = _sorted_by_value(_states_means(rows, question), descending)
        return dict(list(ordered.items())[:5])

    if name == "global_mean":
        return {"global_mean": _global_mean(rows, question)}

    if name == "diff_from_mean":
        global_mean = _global_mean(rows, question)
        diffs = {s: global_mean - m for s, m in _states_means(rows, question).items()}
        return _sorted_by_value(diffs, descending=True)

    if name == "state_diff_from_mean":
        state_mean = _state_mean(rows, question, state)
        return {state: _global_mean(rows, question) - state_mean}

    if name == "mean_by_category":
        groups = _category_values(rows, question)
        return {str(key): _mean(groups[key]) for key in sorted(groups)}

    if name == "state_mean_by_category":
        _state_mean(rows, question, state)  # LookupError if the state has no value at all
        groups = _category_values(rows, question, state)
        inner = {}
        for key in sorted(groups):
            _, category, segment = key
            inner[str((category, segment))] = _mean(groups[key])
        return {state: inner}

    if name == "trend":
        return _trend(rows, question, state)

    raise ValueError(f"unknown query {name!r}")


def _trend(rows, question, state):
    """{year: mean} in year order. A row is in the year of its YearStart, or in "<start>-<end>" when
    its YearEnd is another year; a row without a YearStart is in no year."""
    groups = {}
    for row in rows:
        if row["Question"] != question or row["Data_Value"] is None or row["YearStart"] is None:
            continue
        if state is not None and row["LocationDesc"] != state:
            continue
        start = row["YearStart"]
        end = row["YearEnd"] if row["YearEnd"] is not None else start
        groups.setdefault((start, end), []).append(row["Data_Value"])
    return {
        (str(start) if start == end else f"{start}-{end}"): _mean(groups[(start, end)]) for start, end in sorted(groups)
    }
