"""Sanity tests of the plain-Python reference alone (tests/reference.py), on tiny hand-written CSVs.

The reference is what the kernels are held to, so it must itself be held to API.md.
"""

import csv

import pytest
from conftest import SHARED_DATA_DIR
from reference import (
    QUERY_NAMES,
    QUESTIONS_BEST_IS_MAX,
    QUESTIONS_BEST_IS_MIN,
    load_rows,
    reference,
)

OBESITY = "Percent of adults aged 18 years and older who have obesity"  # Q036, lower is better
MUSCLE = "Percent of adults who engage in muscle-strengthening activities on 2 or more days a week"  # Q046, higher

HEADER = ["YearStart", "LocationDesc", "Question", "Data_Value", "StratificationCategory1", "Stratification1"]


def write_csv(path, rows, header=HEADER, bom=False, crlf=False):
    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        writer = csv.writer(f, lineterminator="\r\n" if crlf else "\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_mean_skips_empty_value(tmp_path):
    rows = load_rows(
        write_csv(
            tmp_path / "a.csv",
            [
                ["2011", "Ohio", OBESITY, "10.0", "Total", "Total"],
                ["2012", "Ohio", OBESITY, "", "Total", "Total"],
                ["2013", "Ohio", OBESITY, "20.5", "Age (years)", "18 - 24"],
            ],
        )
    )
    assert rows[1]["Data_Value"] is None
    assert reference(rows, "state_mean", OBESITY, "Ohio") == {"Ohio": 15.25}
    assert reference(rows, "states_mean", OBESITY) == {"Ohio": 15.25}
    assert reference(rows, "global_mean", OBESITY) == {"global_mean": 15.25}


def test_global_mean_is_over_rows_not_over_state_means(tmp_path):
    rows = load_rows(
        write_csv(
            tmp_path / "a.csv",
            [
                ["2011", "Ohio", OBESITY, "10", "Total", "Total"],
                ["2011", "Ohio", OBESITY, "20", "Sex", "Male"],
                ["2011", "Guam", OBESITY, "40", "Total", "Total"],
                ["2011", "Guam", MUSCLE, "99", "Total", "Total"],  # other question: ignored
            ],
        )
    )
    assert reference(rows, "global_mean", OBESITY) == {"global_mean": 70 / 3}
    assert reference(rows, "states_mean", OBESITY) == {"Ohio": 15.0, "Guam": 40.0}
    assert list(reference(rows, "states_mean", OBESITY)) == ["Ohio", "Guam"]  # ascending by mean
    diff = reference(rows, "diff_from_mean", OBESITY)
    assert list(diff) == ["Ohio", "Guam"]  # descending by difference
    assert diff["Ohio"] == pytest.approx(70 / 3 - 15, rel=1e-12)
    assert diff["Guam"] == pytest.approx(70 / 3 - 40, rel=1e-12)
    assert reference(rows, "state_diff_from_mean", OBESITY, "Guam") == {"Guam": 70 / 3 - 40}


def test_empty_category_counts_in_means_but_not_by_category(tmp_path):
    rows = load_rows(
        write_csv(
            tmp_path / "a.csv",
            [
                ["2011", "New Jersey", OBESITY, "30", "Age (years)", "18 - 24"],
                ["2011", "New Jersey", OBESITY, "39.7", "", ""],
                ["2011", "New Jersey", OBESITY, "50", "Income", ""],
                ["2011", "New Jersey", OBESITY, "60", "", "Male"],
            ],
        )
    )
    assert reference(rows, "state_mean", OBESITY, "New Jersey") == {"New Jersey": (30 + 39.7 + 50 + 60) / 4}
    assert reference(rows, "mean_by_category", OBESITY) == {"('New Jersey', 'Age (years)', '18 - 24')": 30.0}
    assert reference(rows, "state_mean_by_category", OBESITY, "New Jersey") == {
        "New Jersey": {"('Age (years)', '18 - 24')": 30.0}
    }


def test_by_category_keys_format_and_order(tmp_path):
    rows = load_rows(
        write_csv(
            tmp_path / "a.csv",
            [
                ["2011", "Ohio", OBESITY, "1", "Sex", "Male"],
                ["2011", "Ohio", OBESITY, "2", "Age (years)", "25 - 34"],
                ["2011", "Ohio", OBESITY, "3", "Age (years)", "18 - 24"],
                ["2012", "Ohio", OBESITY, "5", "Age (years)", "18 - 24"],
                ["2011", "Alabama", OBESITY, "4", "Sex", "Female"],
                ["2011", "Ohio", OBESITY, "", "Income", "Data not reported"],  # no value: no group
            ],
        )
    )
    got = reference(rows, "mean_by_category", OBESITY)
    assert list(got.items()) == [
        ("('Alabama', 'Sex', 'Female')", 4.0),
        ("('Ohio', 'Age (years)', '18 - 24')", 4.0),
        ("('Ohio', 'Age (years)', '25 - 34')", 2.0),
        ("('Ohio', 'Sex', 'Male')", 1.0),
    ]
    got = reference(rows, "state_mean_by_category", OBESITY, "Ohio")
    assert list(got) == ["Ohio"]
    assert list(got["Ohio"].items()) == [
        ("('Age (years)', '18 - 24')", 4.0),
        ("('Age (years)', '25 - 34')", 2.0),
        ("('Sex', 'Male')", 1.0),
    ]


def six_states(question):
    # means: A=10, B=20, C=30, D=40, E=50, F=60 (state names deliberately not in mean order)
    values = {"Ohio": 30, "Guam": 10, "Iowa": 60, "Utah": 20, "Maine": 50, "Texas": 40}
    return [["2011", s, question, str(v), "Total", "Total"] for s, v in values.items()]


def test_best_worst_lower_is_better(tmp_path):
    rows = load_rows(write_csv(tmp_path / "a.csv", six_states(OBESITY) + six_states(MUSCLE)[:1]))
    assert list(reference(rows, "best5", OBESITY).items()) == [
        ("Guam", 10.0),
        ("Utah", 20.0),
        ("Ohio", 30.0),
        ("Texas", 40.0),
        ("Maine", 50.0),
    ]
    assert list(reference(rows, "worst5", OBESITY).items()) == [
        ("Iowa", 60.0),
        ("Maine", 50.0),
        ("Texas", 40.0),
        ("Ohio", 30.0),
        ("Utah", 20.0),
    ]


def test_best_worst_higher_is_better(tmp_path):
    rows = load_rows(write_csv(tmp_path / "a.csv", six_states(MUSCLE) + six_states(OBESITY)[:1]))
    assert list(reference(rows, "best5", MUSCLE).items()) == [
        ("Iowa", 60.0),
        ("Maine", 50.0),
        ("Texas", 40.0),
        ("Ohio", 30.0),
        ("Utah", 20.0),
    ]
    assert list(reference(rows, "worst5", MUSCLE).items()) == [
        ("Guam", 10.0),
        ("Utah", 20.0),
        ("Ohio", 30.0),
        ("Texas", 40.0),
        ("Maine", 50.0),
    ]


def test_fewer_than_five_states(tmp_path):
    rows = load_rows(write_csv(tmp_path / "a.csv", six_states(MUSCLE)[:3]))
    assert list(reference(rows, "best5", MUSCLE)) == ["Iowa", "Ohio", "Guam"]
    assert list(reference(rows, "worst5", MUSCLE)) == ["Guam", "Ohio", "Iowa"]


def test_ties_stay_alphabetical(tmp_path):
    rows = load_rows(
        write_csv(
            tmp_path / "a.csv",
            [["2011", s, OBESITY, "25", "Total", "Total"] for s in ("Utah", "Alaska", "Ohio")]
            + [["2011", "Guam", OBESITY, "5", "Total", "Total"]],
        )
    )
    assert list(reference(rows, "states_mean", OBESITY)) == ["Guam", "Alaska", "Ohio", "Utah"]
    assert list(reference(rows, "worst5", OBESITY)) == ["Alaska", "Ohio", "Utah", "Guam"]
    assert list(reference(rows, "diff_from_mean", OBESITY)) == ["Guam", "Alaska", "Ohio", "Utah"]


def test_state_without_value_raises_lookup_error(tmp_path):
    rows = load_rows(
        write_csv(
            tmp_path / "a.csv",
            [
                ["2011", "Ohio", OBESITY, "10", "Total", "Total"],
                ["2011", "Guam", OBESITY, "", "Total", "Total"],
                ["2011", "Iowa", MUSCLE, "10", "Total", "Total"],
            ],
        )
    )
    for name in ("state_mean", "state_diff_from_mean", "state_mean_by_category"):
        for state in ("Guam", "Iowa"):
            with pytest.raises(LookupError):
                reference(rows, name, OBESITY, state)
    assert reference(rows, "states_mean", OBESITY) == {"Ohio": 10.0}  # not an error there: just absent


def test_load_bom_crlf_quoted_commas_any_column_order(tmp_path):
    header = ["Income", "Stratification1", "Data_Value", "LocationDesc", "StratificationCategory1", "Question"]
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["$15,000 - $24,999", "$15,000 - $24,999", "34.8", "Alabama", "Income", OBESITY],
            ["", "Total", "", "Alabama", "Total", OBESITY],
        ],
        header=header,
        bom=True,
        crlf=True,
    )
    assert path.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" in path.read_bytes()
    rows = load_rows(path)
    assert rows == [
        {
            "LocationDesc": "Alabama",
            "Question": OBESITY,
            "Data_Value": 34.8,
            "StratificationCategory1": "Income",
            "Stratification1": "$15,000 - $24,999",
            "YearStart": None,
            "YearEnd": None,
        },
        {
            "LocationDesc": "Alabama",
            "Question": OBESITY,
            "Data_Value": None,
            "StratificationCategory1": "Total",
            "Stratification1": "Total",
            "YearStart": None,
            "YearEnd": None,
        },
    ]
    assert reference(rows, "mean_by_category", OBESITY) == {"('Alabama', 'Income', '$15,000 - $24,999')": 34.8}


def test_missing_column_refused(tmp_path):
    path = write_csv(tmp_path / "a.csv", [["Ohio", OBESITY, "1"]], header=["LocationDesc", "Question", "Data_Value"])
    with pytest.raises(ValueError, match="StratificationCategory1"):
        load_rows(path)


def test_unknown_query_refused(tmp_path):
    rows = load_rows(write_csv(tmp_path / "a.csv", six_states(OBESITY)))
    with pytest.raises(ValueError):
        reference(rows, "median", OBESITY)
    assert len(QUERY_NAMES) == 9


def test_direction_lists_match_the_cdc_file():
    path = SHARED_DATA_DIR / "cdc-nutrition-physical-activity-obesity.csv"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    with open(path, newline="", encoding="utf-8-sig") as f:
        ids = {(r["QuestionID"], r["Question"]) for r in csv.DictReader(f)}
    by_id = dict(ids)
    assert len(by_id) == len(ids) == 9
    assert tuple(by_id[q] for q in ("Q037", "Q036", "Q047", "Q018", "Q019")) == QUESTIONS_BEST_IS_MIN
    assert tuple(by_id[q] for q in ("Q043", "Q044", "Q045", "Q046")) == QUESTIONS_BEST_IS_MAX
