"""The loader: store.csvfile.read_columns / parse_bytes and store.dataset.load_dataset (API.md, "Data").

Columns are found by name; only the five required ones matter; an empty Data_Value is missing;
a BOM, CRLF line ends and quoted fields with commas load; a file the service cannot use is refused
with a DataFileError naming the file, the column and the line.
"""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA_DIR

from server.datasets import load_apart
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
    assert header[0] == "" and "High_Confidence_Limit " in header, (
        "the shared file is not the layout this test is about"
    )

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


@pytest.mark.parametrize(
    "bad", ["1_000", "\u0661\u0662", "\uff11\uff12"], ids=["underscore", "arabic-indic", "fullwidth"]
)
def test_python_only_numerals_are_not_numbers_in_a_csv(tmp_path, bad):
    """float() accepts '1_000' (1000.0) and non-ASCII digits ('١٢', '１２' -> 12.0); a CSV
    number, and every Data_Value of the CDC file, is plain ASCII: such a field is a typo to refuse,
    not a value to average."""
    path = write(
        tmp_path, f"{FIVE}\n30.5,Total,{OBESITY},Total,Ohio\n{bad},Total,{OBESITY},Total,Ohio\n", name="odd.csv"
    )
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


# ---------------------------------------------------------------------------------------------
# The pyarrow reader: the same columns as a plain csv-module parse, at every size and layout

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample.csv"
# About 9 MB: more than two of the loader's 4 MiB read blocks, so that the file is cut in blocks.
ROWS = 80_000


def reference_columns(path):
    """What the loader must give for a valid file, computed row by row with the csv module."""
    with open(path, newline="", encoding="utf-8-sig") as stream:
        records = list(csv.DictReader(stream))
    return {
        "states": [r["LocationDesc"] for r in records],
        "questions": [r["Question"] for r in records],
        "categories": [r["StratificationCategory1"] for r in records],
        "segments": [r["Stratification1"] for r in records],
        "values": [float(r["Data_Value"]) if r["Data_Value"].strip() else math.nan for r in records],
        "year_start": [int(r["YearStart"]) if r["YearStart"] else -1 for r in records]
        if "YearStart" in records[0]
        else None,
    }


def assert_matches_reference(columns, path):
    expected = reference_columns(path)
    for name in ("states", "questions", "categories", "segments"):
        coded = getattr(columns, name)
        assert coded.names == tuple(sorted(set(expected[name]))), f"{name}: names are the sorted distinct strings"
        assert coded.codes.dtype == np.int32
        assert column_values(columns, name) == expected[name], name
    assert columns.values.dtype == np.float64
    np.testing.assert_array_equal(columns.values, np.array(expected["values"]))
    if expected["year_start"] is None:
        assert columns.year_start is None
    else:
        assert columns.year_start.dtype == np.int16
        assert columns.year_start.tolist() == expected["year_start"]


def big_file(tmp_path, row, rows=ROWS, name="big.csv", newline="\n", header=None):
    """`rows` rows made by row(i), behind the header, each line ended by `newline`."""
    header = header or "YearStart,YearEnd,LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1"
    lines = [header] + [row(i) for i in range(rows)]
    return write(tmp_path, newline.join(lines) + newline, name=name)


def cdc_row(i, segment=None, value=None):
    """Row i of a made-up file: four states, two questions, quoted commas, some missing values."""
    state = ("Ohio", "Utah", "Iowa", "Guam")[i % 4]
    if segment is None:
        segment = '"$75,000 or greater"' if i % 3 else "Total"
    if value is None:
        value = "" if i % 11 == 0 else f"{(i % 800) / 10 + 1:.1f}"
    return f"{2011 + i % 12},{2011 + i % 12},{state},{(OBESITY, MUSCLE)[i % 2]},{value},Income,{segment}"


def test_sample_csv_loads_as_the_csv_module_reads_it():
    assert_matches_reference(read_columns(SAMPLE), SAMPLE)
    assert_matches_reference(parse_bytes(SAMPLE.read_bytes(), "sample.csv"), SAMPLE)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_a_file_of_many_blocks_loads_with_any_line_end(tmp_path, newline):
    path = big_file(tmp_path, cdc_row, newline=newline)
    assert path.stat().st_size > 8 << 20
    columns = read_columns(path)
    assert columns.rows == ROWS
    assert_matches_reference(columns, path)
    assert not any(name.endswith("\r") for name in columns.segments.names)


def test_quoted_line_breaks_load_wherever_the_read_blocks_end(tmp_path):
    """Every row's segment holds a line break, so some block of the file ends inside a quoted
    field: the reader must notice and not cut a row in two."""
    path = big_file(tmp_path, lambda i: cdc_row(i, segment='"two\nlines"'))
    columns = read_columns(path)
    assert columns.rows == ROWS
    assert columns.segments.names == ("two\nlines",)
    assert_matches_reference(columns, path)


def test_a_quoted_line_break_in_the_first_column_is_not_misread(tmp_path):
    """The case pyarrow's fast chunker gets wrong without an error: cut inside the first field,
    a block starts with 'State 5",Q,...', which has the right number of fields (measured with
    pyarrow 26: a state 'State 5"' appears and the row cut in two is lost)."""
    header = "LocationDesc,Question,Data_Value,StratificationCategory1,Stratification1"
    path = big_file(tmp_path, lambda i: f'"Ohio\nState {i % 7}",{OBESITY},1.5,Total,Total', rows=150_000, header=header)
    columns = read_columns(path)
    assert columns.rows == 150_000
    assert columns.states.names == tuple(f"Ohio\nState {i}" for i in range(7))
    assert np.bincount(columns.states.codes).tolist() == [150_000 // 7 + (i < 150_000 % 7) for i in range(7)]


def test_blank_lines_between_rows_are_skipped(tmp_path):
    path = big_file(tmp_path, lambda i: cdc_row(i) + ("\n" if i % 1000 == 0 else ""))
    columns = read_columns(path)
    assert columns.rows == ROWS
    assert_matches_reference(columns, path)


def test_the_line_of_a_bad_value_deep_in_a_big_file(tmp_path):
    """Line numbers count the header, the extra line of a quoted line break and blank lines."""
    bad_row = 70_000

    def row(i):
        if i == 5:
            return cdc_row(i, segment='"a\nb"') + "\n"
        return cdc_row(i, value="5.1.") if i == bad_row else cdc_row(i)

    path = big_file(tmp_path, row)
    line = bad_row + 1 + 1 + 1 + 1  # 0-based row, the header, one quoted line break, one blank line
    assert ",5.1.," in path.read_text().split("\n")[line - 1]
    message = refusal(path)
    assert f"line {line}," in message, message
    assert "Data_Value" in message and str(path) in message and "'5.1.'" in message


def test_the_line_of_a_bad_year_deep_in_a_file_of_one_line_per_row(tmp_path):
    bad_row = 70_000
    path = big_file(tmp_path, lambda i: "2O15" + cdc_row(i)[4:] if i == bad_row else cdc_row(i))
    assert path.read_text().split("\n")[bad_row + 1].startswith("2O15,")
    message = refusal(path)
    assert f"line {bad_row + 2}," in message and "YearStart" in message and "'2O15'" in message, message


def test_empty_segments_stay_empty_strings_and_counts_are_kept(tmp_path):
    path = write(tmp_path, f"{FIVE}\n1.5,,{OBESITY},,Ohio\n2.5,Total,{OBESITY},Total,Ohio\n")
    columns = read_columns(path)
    assert columns.categories.names == ("", "Total") and columns.segments.names == ("", "Total")
    assert columns.categories.codes.tolist() == [0, 1]
    dataset = load_dataset(path)
    try:
        assert dataset.catalog.strata == (("Total", "Total"),)
        assert int(dataset.arrays["count"].sum()) == 2, "a row without a stratum still counts"
    finally:
        dataset.close()


def test_spaces_around_a_number_and_an_empty_year_load(tmp_path):
    path = write(
        tmp_path,
        f"YearStart,YearEnd,{FIVE}\n2015,2015, 30.5 ,Total,{OBESITY},Total,Ohio\n,,+2e1,Total,{OBESITY},Total,Utah\n",
    )
    columns = read_columns(path)
    assert columns.values.tolist() == [30.5, 20.0]
    assert columns.year_start.tolist() == [2015, -1] and columns.year_end.tolist() == [2015, -1]


def test_a_header_only_file_loads_with_no_rows(tmp_path):
    columns = read_columns(write(tmp_path, f"{FIVE}\n"))
    assert columns.rows == 0 and columns.states.names == () and columns.values.dtype == np.float64


def test_a_value_too_large_for_a_float_is_refused_naming_the_line(tmp_path):
    path = write(
        tmp_path, f"{FIVE}\n30.5,Total,{OBESITY},Total,Ohio\n1e999,Total,{OBESITY},Total,Ohio\n", name="huge.csv"
    )
    message = refusal(path)
    assert str(path) in message and "Data_Value" in message and "line 3" in message and "1e999" in message


@pytest.mark.parametrize("bad", ["20x5", "nan", "-3", "99999"])
def test_a_bad_year_is_refused_naming_the_column_and_line(tmp_path, bad):
    path = write(
        tmp_path,
        f"YearStart,YearEnd,{FIVE}\n2015,2015,1.5,Total,{OBESITY},Total,Ohio\n2015,{bad},1.5,Total,{OBESITY},Total,Ohio\n",
        name="year.csv",
    )
    message = refusal(path)
    assert str(path) in message and "YearEnd" in message and "line 3" in message and bad in message


def test_a_row_longer_than_the_header_is_refused_naming_the_line(tmp_path):
    path = write(
        tmp_path, f"{FIVE}\n30.5,Total,{OBESITY},Total,Ohio\n30.5,Total,{OBESITY},Total,Ohio,extra\n", name="long.csv"
    )
    message = refusal(path)
    assert str(path) in message and "line 3" in message


def test_a_missing_file_and_a_directory_are_refused_naming_them(tmp_path):
    for path in (tmp_path / "absent.csv", tmp_path):
        message = refusal(path)
        assert str(path) in message


# ---------------------------------------------------------------------------------------------
# Loading in a process of its own (the server's start-up and restored uploads)


async def test_a_file_loaded_apart_is_the_file_loaded_here():
    sample = Path(__file__).resolve().parents[1] / "data" / "sample.csv"
    here, apart = load_dataset(sample), await load_apart(sample, "default")
    assert apart.catalog == here.catalog
    assert apart.arrays.keys() == here.arrays.keys()
    for name, array in here.arrays.items():
        assert np.array_equal(apart.arrays[name], array, equal_nan=array.dtype.kind == "f"), name


async def test_a_file_refused_apart_is_refused_with_the_same_message(tmp_path):
    path = write(tmp_path, f"{FIVE}\nabc,Total,{OBESITY},Total,Ohio\n", name="bad-apart.csv")
    with pytest.raises(DataFileError) as refused:
        await load_apart(path, "default")
    assert str(refused.value) == refusal(path)
