"""Tests of the seeded sample-data generator (data/generate.py) and the bundled sample."""

from __future__ import annotations

import csv
import importlib.util
import io
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "data" / "generate.py"
SAMPLE = ROOT / "data" / "sample.csv"

REQUIRED_COLUMNS = (
    "YearStart",
    "YearEnd",
    "LocationAbbr",
    "LocationDesc",
    "Question",
    "QuestionID",
    "Data_Value",
    "Data_Value_Alt",
    "Data_Value_Footnote_Symbol",
    "Low_Confidence_Limit",
    "High_Confidence_Limit ",
    "Sample_Size",
    "Total",
    "Age(years)",
    "Education",
    "Gender",
    "Income",
    "Race/Ethnicity",
    "LocationID",
    "StratificationCategory1",
    "Stratification1",
    "StratificationCategoryId1",
    "StratificationID1",
)
CATEGORY_COLUMNS = {
    "Total": "Total",
    "Age (years)": "Age(years)",
    "Education": "Education",
    "Gender": "Gender",
    "Income": "Income",
    "Race/Ethnicity": "Race/Ethnicity",
}
ONE_DECIMAL = re.compile(r"\d{1,2}\.\d")
SEED = 2024  # the default seed: its cells are cached, which keeps the tests quick
OTHER_SEED = 7


def _load_generator() -> ModuleType:
    """Import data/generate.py by path: data/ is not a package."""
    spec = importlib.util.spec_from_file_location("sample_data_generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def _csv_bytes(rows: int, seed: int) -> bytes:
    buffer = io.StringIO(newline="")
    gen.write_csv(buffer, rows, seed)
    return buffer.getvalue().encode("utf-8")


def _parse(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    rows = list(reader)
    assert reader.fieldnames is not None
    return list(reader.fieldnames), rows


@pytest.fixture(scope="module")
def default_bytes() -> bytes:
    return _csv_bytes(gen.DEFAULT_ROWS, gen.DEFAULT_SEED)


@pytest.fixture(scope="module")
def default_rows(default_bytes: bytes) -> list[dict[str, str]]:
    return _parse(default_bytes)[1]


@pytest.fixture(scope="module")
def long_bytes() -> bytes:
    """A file longer than one pass over all cells, so rows start repeating cells."""
    return _csv_bytes(gen.CELL_COUNT + 777, SEED)


@pytest.fixture(scope="module")
def long_rows(long_bytes: bytes) -> list[dict[str, str]]:
    return _parse(long_bytes)[1]


@pytest.fixture(params=["100 rows", "101 rows", "5000 rows", "default", "long"])
def generated_rows(request: pytest.FixtureRequest) -> list[dict[str, str]]:
    """Files of several sizes, for the checks that must hold in every file."""
    if request.param == "default":
        return request.getfixturevalue("default_rows")
    if request.param == "long":
        return request.getfixturevalue("long_rows")
    rows = int(request.param.split()[0])
    return _parse(_csv_bytes(rows, OTHER_SEED if rows == 100 else SEED))[1]


def test_defaults_match_the_documented_command() -> None:
    assert gen.DEFAULT_ROWS == 18650
    assert gen.DEFAULT_SEED == 2024
    assert gen.DEFAULT_OUT == SAMPLE


def test_same_seed_gives_same_bytes() -> None:
    first = _csv_bytes(3000, OTHER_SEED)
    gen._population.cache_clear()  # draw the cells afresh rather than reuse the cached ones
    assert _csv_bytes(3000, OTHER_SEED) == first


def test_other_seed_gives_other_bytes() -> None:
    assert _csv_bytes(3000, OTHER_SEED) != _csv_bytes(3000, SEED)


@pytest.mark.parametrize("rows", [0, 1, 2, 99, 100, 1234])
def test_row_count_is_exact(rows: int) -> None:
    header, parsed = _parse(_csv_bytes(rows, SEED))
    assert header == list(gen.HEADER)
    assert len(parsed) == rows


def test_row_count_is_exact_past_one_pass_over_all_cells(long_bytes: bytes, long_rows: list[dict[str, str]]) -> None:
    rows = gen.CELL_COUNT + 777
    assert long_bytes.count(b"\n") == rows + 1
    assert len(long_rows) == rows


def test_negative_rows_are_refused() -> None:
    with pytest.raises(ValueError):
        list(gen.generate_rows(-1, 1))


def test_header_has_the_original_layout() -> None:
    header = _parse(_csv_bytes(10, SEED))[0]
    assert header == list(gen.HEADER)
    for column in REQUIRED_COLUMNS:
        assert column in header
    assert "Sex" not in header
    assert len(header) == len(set(header)) == 33


def test_bundled_sample_is_what_the_defaults_generate(default_bytes: bytes) -> None:
    assert SAMPLE.read_bytes() == default_bytes, (
        "data/sample.csv drifted from the generator: run `python data/generate.py`"
    )


def test_file_encoding_and_line_ends(default_bytes: bytes) -> None:
    assert not default_bytes.startswith(b"\xef\xbb\xbf")
    assert b"\r" not in default_bytes
    assert default_bytes.endswith(b"\n")
    assert b'"$75,000 or greater"' in default_bytes


def test_generate_rows_matches_write_csv() -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=gen.HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(gen.generate_rows(2500, SEED))
    assert buffer.getvalue().encode("utf-8") == _csv_bytes(2500, SEED)


def test_command_line_writes_to_stdout() -> None:
    command = [sys.executable, str(GENERATOR), "--rows", "300", "--seed", str(SEED), "--out", "-"]
    piped = subprocess.run(command, capture_output=True, check=True)
    assert piped.stdout == _csv_bytes(300, SEED)


def test_write_csv_to_a_path_makes_its_directory(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "out.csv"
    gen.write_csv(target, 300, SEED)
    assert target.read_bytes() == _csv_bytes(300, SEED)


def test_values_are_one_decimal_in_range(generated_rows: list[dict[str, str]]) -> None:
    for row in generated_rows:
        value = row["Data_Value"]
        assert row["Data_Value_Alt"] == value
        if not value:
            assert row["Data_Value_Footnote_Symbol"] == "~"
            assert row["Data_Value_Footnote"] == ("Data not available because sample size is insufficient.")
            continue
        assert ONE_DECIMAL.fullmatch(value), value
        assert 1.0 <= float(value) <= 80.0
        assert float(row["Low_Confidence_Limit"]) <= float(value)
        assert float(value) <= float(row["High_Confidence_Limit "])
        assert re.fullmatch(r"[1-9]\d*\.0", row["Sample_Size"]), row["Sample_Size"]
        assert row["Data_Value_Footnote_Symbol"] == ""


def test_about_half_a_percent_of_values_are_suppressed(default_rows: list[dict[str, str]]) -> None:
    empty = sum(1 for row in default_rows if not row["Data_Value"])
    assert 0.002 <= empty / len(default_rows) <= 0.01


def test_exactly_one_row_has_no_stratification(generated_rows: list[dict[str, str]]) -> None:
    bare = [row for row in generated_rows if not row["StratificationCategory1"]]
    assert len(bare) == 1
    row = bare[0]
    assert row["Stratification1"] == ""
    assert row["StratificationCategoryId1"] == row["StratificationID1"] == ""
    assert ONE_DECIMAL.fullmatch(row["Data_Value"])
    assert all(not row[column] for column in CATEGORY_COLUMNS.values()), "the unstratified row must not name a segment"
    assert sum(1 for row in generated_rows if not row["Stratification1"]) == 1


def test_category_column_holds_the_segment(generated_rows: list[dict[str, str]]) -> None:
    for row in generated_rows:
        category = row["StratificationCategory1"]
        if not category:
            continue
        for name, column in CATEGORY_COLUMNS.items():
            expected = row["Stratification1"] if name == category else ""
            assert row[column] == expected


def test_default_sample_covers_every_name(default_rows: list[dict[str, str]]) -> None:
    locations = {(r["LocationAbbr"], r["LocationDesc"], r["LocationID"]) for r in default_rows}
    assert len(locations) == 55
    names = {name for _, name, _ in locations}
    assert {"National", "District of Columbia", "Guam", "Puerto Rico", "Virgin Islands"} <= names
    assert len({r["QuestionID"] for r in default_rows}) == 9
    assert len({r["Question"] for r in default_rows}) == 9
    segments = Counter(
        (r["StratificationCategory1"], r["Stratification1"]) for r in default_rows if r["StratificationCategory1"]
    )
    per_category = Counter(category for category, _ in segments)
    assert per_category == {
        "Total": 1,
        "Age (years)": 6,
        "Education": 4,
        "Gender": 2,
        "Income": 7,
        "Race/Ethnicity": 8,
    }


def test_every_location_has_a_value_for_every_question(
    default_rows: list[dict[str, str]],
) -> None:
    pairs = {(r["LocationAbbr"], r["QuestionID"]) for r in default_rows if r["Data_Value"]}
    assert len(pairs) == 55 * 9


def test_no_cell_repeats_within_one_pass(default_rows: list[dict[str, str]]) -> None:
    keys = Counter(
        (r["YearStart"], r["LocationAbbr"], r["QuestionID"], r["StratificationID1"])
        for r in default_rows
        if r["StratificationID1"]
    )
    assert max(keys.values()) == 1


def test_years_follow_the_survey_schedule(default_rows: list[dict[str, str]]) -> None:
    for row in default_rows:
        year = int(row["YearStart"])
        assert row["YearEnd"] == row["YearStart"]
        assert 2011 <= year <= 2022
        question = row["QuestionID"]
        if question in {"Q043", "Q044", "Q045", "Q046"}:
            assert year % 2 == 1
        elif question in {"Q018", "Q019"}:
            assert year in {2017, 2019, 2021}


def test_question_levels_are_realistic(default_rows: list[dict[str, str]]) -> None:
    values: dict[str, list[float]] = {}
    for row in default_rows:
        if row["Data_Value"] and row["StratificationCategory1"] == "Total":
            values.setdefault(row["QuestionID"], []).append(float(row["Data_Value"]))
    means = {question: sum(v) / len(v) for question, v in values.items()}
    expected = {"Q018": 38, "Q036": 30, "Q037": 35, "Q043": 50, "Q047": 25}
    for question, level in expected.items():
        assert abs(means[question] - level) < 5, (question, means[question])
