"""The loader: store.csvfile.read_columns / parse_bytes and store.dataset.load_dataset (API.md, "Data").

Columns are found by name; only the five required ones matter; an empty Data_Value is missing;
a BOM, CRLF line ends and quoted fields with commas load; a file the service cannot use is refused
with a DataFileError naming the file, the column and the line.
"""

import csv
import math

import numpy as np
import pytest

from conftest import SHARED_DATA_DIR
from store.csvfile import REQUIRED, DataFileError, parse_bytes, read_columns
from store.dataset import load_dataset

ASSIGNMENT_ROWS = SHARED_DATA_DIR / "assignment-sample-rows.csv"
CDC_FULL = SHARED_DATA_DIR / "cdc-nutrition-physical-activity-obesity.csv"

OBESITY = "Percent of adults aged 18 years and older who have obesity"
MUSCLE = "Percent of adults who engage in muscle-strengthening activities on 2 or more days a week"

# The five required columns, deliberately not in the CDC order: columns are found by name.
FIVE = "Data_Value,Stratification1,Question,StratificationCategory1,LocationDesc"


def needs(path):
    return pytest.mark.skipif(not path.exists(), reason=f"shared data file {path} is absent")


def write(tmp_path, text, name="data.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def column_values(columns, coded_name):
    """A coded column back as one string per row."""
    coded = getattr(columns, coded_name)
    return [coded.names[code] for code in coded.codes.tolist()]


def refusal(path):
    """The message of the DataFileError that loading `path` raises (both entry points agree)."""
    messages = []
    for load in (read_columns, load_dataset):
        try:
            loaded = load(path)
        except DataFileError as error:
            messages.append(str(error))
        except Exception as error:
            pytest.fail(f"{load.__name__}({path.name}): {type(error).__name__} instead of a DataFileError: {error}")
        else:
            values = loaded.values if load is read_columns else loaded.arrays["sum"]
            pytest.fail(f"{load.__name__}({path.name}) loaded it instead of refusing it: {values.tolist()[:10]}")
    assert messages[0] == messages[1]
    return messages[0]


# ---------------------------------------------------------------------------------------------
# Files that load


def test_only_the_five_required_columns_load(tmp_path):
    path = write(
        tmp_path,
        f"{FIVE}\n"
        f"30.5,Total,{OBESITY},Total,Ohio\n"
        f"20.0,18 - 24,{OBESITY},Age (years),Ohio\n"
        f",Total,{OBESITY},Total,Utah\n"
        f"40.25,Total,{MUSCLE},Total,Utah\n",
    )
    columns = read_columns(path)

    assert columns.rows == 4
    assert column_values(columns, "states") == ["Ohio", "Ohio", "Utah", "Utah"]
    assert column_values(columns, "questions") == [OBESITY, OBESITY, OBESITY, MUSCLE]
    assert column_values(columns, "categories") == ["Total", "Age (years)", "Total", "Total"]
    assert column_values(columns, "segments") == ["Total", "18 - 24", "Total", "Total"]
    assert columns.values[[0, 1, 3]].tolist() == [30.5, 20.0, 40.25]
    assert math.isnan(columns.values[2]), "an empty Data_Value is a missing value"
    assert columns.year_start is None and columns.year_end is None

    dataset = load_dataset(path)
    try:
        assert dataset.catalog.rows == 4
        assert dataset.catalog.states == ("Ohio", "Utah")
        assert set(dataset.catalog.questions) == {OBESITY, MUSCLE}
        assert dataset.catalog.year_range is None
    finally:
        dataset.close()


@needs(ASSIGNMENT_ROWS)
def test_the_assignment_layout_loads():
    """Empty-named index column first, 'High_Confidence_Limit ' with a trailing space, 'Gender'."""
    with open(ASSIGNMENT_ROWS, newline="", encoding="utf-8-sig") as stream:
        records = list(csv.DictReader(stream))
    header = list(records[0])
    assert header[0] == "" and "High_Confidence_Limit " in header, "the shared file is not the layout this test is about"

    columns = read_columns(ASSIGNMENT_ROWS)

    assert columns.rows == len(records) == 106
    assert column_values(columns, "states") == [r["LocationDesc"] for r in records]
    assert column_values(columns, "questions") == [r["Question"] for r in records]
    assert column_values(columns, "categories") == [r["StratificationCategory1"] for r in records]
    assert column_values(columns, "segments") == [r["Stratification1"] for r in records]
    assert "Gender" in columns.categories.names
    assert columns.values.tolist() == [float(r["Data_Value"]) for r in records]
    # The years are YearStart/YearEnd, not the index column in front of them.
    assert columns.year_start.tolist() == [int(r["YearStart"]) for r in records]
    assert columns.year_end.tolist() == [int(r["YearEnd"]) for r in records]
    # The first row, as a person reads it: a quoted segment holding a comma.
    assert (column_values(columns, "states")[0], columns.values[0], column_values(columns, "segments")[0]) == (
        "Ohio",
        29.4,
        "$75,000 or greater",
    )

    dataset = load_dataset(ASSIGNMENT_ROWS)
    try:
        assert dataset.catalog.rows == 106
        assert ("Gender", "Female") in dataset.catalog.strata or ("Gender", "Male") in dataset.catalog.strata
    finally:
        dataset.close()


@needs(CDC_FULL)
def test_the_full_cdc_file_loads_with_every_row():
    with open(CDC_FULL, newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        empty_values = sum(1 for record in reader if record["Data_Value"].strip() == "")

    dataset = load_dataset(CDC_FULL)
    try:
        catalog = dataset.catalog
        assert catalog.rows == 106_260
        assert len(catalog.questions) == 9
        assert len(catalog.states) == 55
        assert "National" in catalog.states and "Guam" in catalog.states
        assert catalog.year_range == (2011, 2023)
        # Every row with a value is in exactly one cell; the empty ones (about 12%) in none.
        assert int(dataset.arrays["count"].sum()) == 106_260 - empty_values
        assert 0.05 * 106_260 < empty_values < 0.2 * 106_260
    finally:
        dataset.close()


def test_bom_crlf_and_quoted_commas_load(tmp_path):
    text = (
        "YearStart,YearEnd,LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1\r\n"
        f'2015,2015,Ohio,{OBESITY},31.5,Income,"$75,000 or greater"\r\n'
        f'2017,2017,"Ohio",{OBESITY},"28.5",Income,"Less than $15,000"\r\n'
        f'2017,2017,"Virgin Islands",{OBESITY},,"Total","Total"\r\n'
    )
    path = write(tmp_path, "\ufeff" + text)
    assert path.read_bytes().startswith(b"\xef\xbb\xbfYearStart")

    for columns in (read_columns(path), parse_bytes(path.read_bytes(), "upload.csv")):
        assert columns.rows == 3
        assert column_values(columns, "states") == ["Ohio", "Ohio", "Virgin Islands"]
        assert column_values(columns, "segments") == ["$75,000 or greater", "Less than $15,000", "Total"]
        assert column_values(columns, "categories") == ["Income", "Income", "Total"]
        assert columns.values[:2].tolist() == [31.5, 28.5]
        assert math.isnan(columns.values[2])
        assert columns.year_start.tolist() == [2015, 2017, 2017]
        # No '\r' left on the last field of a line, no BOM glued to the first header name.
        assert not any(name.endswith("\r") for name in columns.segments.names)


def test_a_quoted_field_may_hold_a_line_break(tmp_path):
    path = write(tmp_path, f'{FIVE}\n1.5,"two\nlines",{OBESITY},Total,Ohio\n2.5,Total,{OBESITY},Total,Utah\n')
    columns = read_columns(path)
    assert columns.rows == 2
    assert column_values(columns, "segments") == ["two\nlines", "Total"]
    assert columns.values.tolist() == [1.5, 2.5]


# ---------------------------------------------------------------------------------------------
# Files that are refused


@pytest.mark.parametrize("missing", REQUIRED)
def test_a_missing_required_column_is_refused_naming_file_column_and_line_1(tmp_path, missing):
    header = [name for name in FIVE.split(",") if name != missing] + ["YearStart"]
    path = write(tmp_path, ",".join(header) + "\n" + ",".join(["1"] * len(header)) + "\n", name="no-column.csv")

    message = refusal(path)

    assert str(path) in message
    assert missing in message
    assert "line 1" in message


def test_a_header_name_with_a_stray_space_is_not_the_required_column(tmp_path):
    path = write(tmp_path, FIVE.replace("Data_Value", "Data_Value ") + f"\n1.5,Total,{OBESITY},Total,Ohio\n")
    message = refusal(path)
    assert str(path) in message and "Data_Value" in message and "line 1" in message


@pytest.mark.parametrize("bad", ["abc", "nan", "NaN", "inf", "-inf", "Infinity", "12.5.1", "~"])
def test_a_data_value_that_is_not_a_number_is_refused_naming_file_column_and_line(tmp_path, bad):
    # Line 1 header, 2 and 3 good rows (3 with a missing value), 4 blank, 5 the bad one, 6 good.
    path = write(
        tmp_path,
        f"{FIVE}\n"
        f"30.5,Total,{OBESITY},Total,Ohio\n"
        f",Total,{OBESITY},Total,Utah\n"
        "\n"
        f"{bad},Total,{OBESITY},Total,Iowa\n"
        f"20.5,Total,{OBESITY},Total,Iowa\n",
        name="bad-value.csv",
    )

    message = refusal(path)

    assert str(path) in message
    assert "Data_Value" in message
    assert "line 5" in message, message
    assert repr(bad) in message or bad in message


def test_the_line_of_a_bad_value_counts_the_lines_of_a_quoted_line_break_before_it(tmp_path):
    path = write(
        tmp_path,
        f'{FIVE}\n1.5,"two\nlines",{OBESITY},Total,Ohio\nabc,Total,{OBESITY},Total,Utah\n',
        name="multi.csv",
    )
    message = refusal(path)
    assert "line 4" in message, f"the bad row is on the file's 4th line (an editor's count): {message}"


def test_a_bad_value_in_an_upload_names_the_upload(tmp_path):
    content = f"{FIVE}\r\n30.5,Total,{OBESITY},Total,Ohio\r\nabc,Total,{OBESITY},Total,Ohio\r\n".encode()
    with pytest.raises(DataFileError) as raised:
        parse_bytes(content, "my-upload.csv")
    message = str(raised.value)
    assert "my-upload.csv" in message and "Data_Value" in message and "line 3" in message


@pytest.mark.parametrize("bad", ["1_000", "\u0661\u0662", "\uff11\uff12"], ids=["underscore", "arabic-indic", "fullwidth"])
def test_python_only_numerals_are_not_numbers_in_a_csv(tmp_path, bad):
    """float() accepts '1_000' (1000.0) and non-ASCII digits ('١٢', '１２' -> 12.0); a CSV
    number, and every Data_Value of the CDC file, is plain ASCII: such a field is a typo to refuse,
    not a value to average."""
    path = write(tmp_path, f"{FIVE}\n30.5,Total,{OBESITY},Total,Ohio\n{bad},Total,{OBESITY},Total,Ohio\n", name="odd.csv")
    message = refusal(path)
    assert str(path) in message and "Data_Value" in message and "line 3" in message


@pytest.mark.parametrize(
    "short_row",
    ["Ohio", "30.5,Total", f"30.5,Total,{OBESITY},Total"],
    ids=["one-field", "two-fields", "four-fields"],
)
def test_a_short_row_is_refused_naming_the_line(tmp_path, short_row):
    path = write(
        tmp_path,
        f"{FIVE}\n30.5,Total,{OBESITY},Total,Ohio\n31.5,Total,{OBESITY},Total,Utah\n{short_row}\n",
        name="short.csv",
    )
    message = refusal(path)
    assert str(path) in message
    assert "line 4" in message, message


def test_a_file_that_is_not_utf8_is_refused_naming_the_file(tmp_path):
    path = write(tmp_path, f"{FIVE}\n30.5,Total,{OBESITY},Total,Bogot\u00e1\n", name="latin-1.csv", encoding="latin-1")
    with pytest.raises(DataFileError) as raised:
        parse_bytes(path.read_bytes(), "latin-1.csv")
    assert "latin-1.csv" in str(raised.value)
    message = refusal(path)  # read_columns and load_dataset: the same refusal as an upload gets
    assert str(path) in message


def test_an_empty_file_is_refused_naming_the_file(tmp_path):
    path = write(tmp_path, "", name="empty.csv")
    message = refusal(path)
    assert str(path) in message and "line 1" in message


def test_a_good_file_after_a_refused_one_still_loads(tmp_path):
    """Refusals leave no state behind (the loader is a pure function of the file)."""
    refusal(write(tmp_path, f"{FIVE}\nabc,Total,{OBESITY},Total,Ohio\n", name="bad.csv"))
    columns = read_columns(write(tmp_path, f"{FIVE}\n1.0,Total,{OBESITY},Total,Ohio\n", name="good.csv"))
    assert columns.values.dtype == np.float64 and columns.values.tolist() == [1.0]
