"""Read a CDC-schema CSV into integer-coded columns.

Columns are found by header name, never by position, so the original 34-column layout (with its
empty-named index column), the current 33-column CDC release and a file holding only the five
required columns all load. Text columns become small integer codes whose order is the sorted order
of the strings, so sorting codes sorts names; values become float64 with NaN for a missing value.

pyarrow's multithreaded CSV reader does the work: it converts only the five to seven columns used,
straight into dictionary form (distinct strings plus one int32 index per row), so no per-row Python
object is ever made. Numbers and years are checked and converted on those small dictionaries, then
spread to the rows with a numpy take. The csv module only reads the header and, when a file is
refused and its records are not one line each, rescans it to say on which line the fault is.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

STATE = "LocationDesc"
QUESTION = "Question"
VALUE = "Data_Value"
CATEGORY = "StratificationCategory1"
SEGMENT = "Stratification1"
YEAR_START = "YearStart"
YEAR_END = "YearEnd"
REQUIRED = (STATE, QUESTION, VALUE, CATEGORY, SEGMENT)

NO_YEAR = -1
# A CSV number: ASCII digits, an optional sign, point and exponent. A plain cast would also take
# "nan" and "inf", and float() would take "1_000" and non-ASCII digits.
_NUMBER = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_TEXT = pa.dictionary(pa.int32(), pa.string())
# What the utf-8 codec's "surrogateescape" handler makes of a byte that is not UTF-8.
_UNDECODED = re.compile("[\udc80-\udcff]")

# pyarrow's read block. Four times its 1 MiB default: a quarter of the chunks, so combining their
# dictionaries afterwards is cheap, with still a dozen blocks per thread in a 100 MB file.
_BLOCK_BYTES = 4 << 20
_LF, _CR = ord("\n"), ord("\r")

Stream = io.BufferedReader | io.BytesIO  # what openers return: a file or the bytes of an upload
Opener = Callable[[], Stream]


class DataFileError(ValueError):
    """A data file the service refuses; the message names the file, the column and the line."""


@dataclass(frozen=True)
class Coded:
    """One text column as codes into its sorted distinct strings."""

    names: tuple[str, ...]
    codes: np.ndarray


@dataclass(frozen=True)
class Columns:
    """The columns the service uses, one entry per data row."""

    states: Coded
    questions: Coded
    categories: Coded
    segments: Coded
    values: np.ndarray
    year_start: np.ndarray | None
    year_end: np.ndarray | None

    @property
    def rows(self) -> int:
        return len(self.values)


def read_columns(path: str | Path, label: str | None = None) -> Columns:
    """Load the CSV at `path`; `label` is the name used in error messages (an upload's file name)."""
    label = label or str(path)
    try:
        return _parse(str(path), lambda: open(path, "rb"), label)
    except OSError as error:
        reason = getattr(error, "strerror", None) or error
        raise DataFileError(f"{label}: cannot read the file: {reason}") from None


def parse_bytes(content: bytes, label: str) -> Columns:
    """Load a CSV held in memory (an upload); pyarrow reads the bytes in place, without a copy.
    An upload that could answer no query (no data rows, or no value in any) is surely a mistake."""
    columns = _parse(pa.py_buffer(content), lambda: io.BytesIO(content), label)
    if columns.rows == 0:
        raise DataFileError(f"{label}: line 2: the file has a header but no data rows")
    if np.isnan(columns.values).all():
        raise DataFileError(f"{label}: no row has a {VALUE}: there is nothing to average")
    return columns


def _parse(source: str | pa.Buffer, opener: Opener, label: str) -> Columns:
    """Check the header, read the used columns with pyarrow, then check and convert them.

    `source` is what pyarrow reads (a path, so that it reads the file natively, or a buffer);
    `opener` gives the same bytes again, for the header, the line count and locating a fault.
    """
    with opener() as stream:
        header = next(_records(stream, label), None)
    if header is None:
        raise DataFileError(f"{label}: the file is empty (line 1): expected a CSV header")
    _, names = header
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise DataFileError(f"{label}: line 1: the header lacks the required column(s) {', '.join(missing)}")
    doubled = [name for name in (*REQUIRED, YEAR_START, YEAR_END) if names.count(name) > 1]
    if doubled:
        raise DataFileError(f"{label}: line 1: the header names the column {doubled[0]} more than once")
    wanted = list(REQUIRED)
    has_years = YEAR_START in names and YEAR_END in names
    if has_years:
        wanted += [YEAR_START, YEAR_END]

    try:
        table, line_per_record = _read_table(source, opener, wanted)
    except pa.ArrowInvalid as error:
        raise _locate_fault(opener, names, wanted, label, error) from None

    def line_of(row: int) -> int:
        """The line data row `row` (0-based) starts on; a rescan only if lines and records differ."""
        return row + 2 if line_per_record else _line_of_row(opener, row, label)

    columns = {name: _dictionary_and_indices(table.column(name)) for name in wanted}
    del table  # its chunks: a second copy of every column's indices, 20 MB each at 5M rows
    return Columns(
        states=_coded(*columns[STATE]),
        questions=_coded(*columns[QUESTION]),
        categories=_coded(*columns[CATEGORY]),
        segments=_coded(*columns[SEGMENT]),
        values=_values(*columns[VALUE], line_of, label),
        year_start=_years(*columns[YEAR_START], YEAR_START, line_of, label) if has_years else None,
        year_end=_years(*columns[YEAR_END], YEAR_END, line_of, label) if has_years else None,
    )


def _read_table(source: str | pa.Buffer, opener: Opener, wanted: list[str]) -> tuple[pa.Table, bool]:
    """The `wanted` columns, each as dictionary-encoded strings, and whether each record
    (header included) is one line of the file.

    pyarrow's fast chunker splits the bytes into blocks at line ends, as if no quoted field held
    one; a block cut inside a quoted field would leave a line without a record, or a record
    spread over lines. So the fast result is kept only when the records (header included) are as
    many as the lines: then every cut fell between records and the result is exact. Otherwise (a
    quoted line break, a blank line, a refused row) the file is read again with
    `newlines_in_values`, right for any file but slower: its quote-aware chunker is one more
    serial pass over the bytes, which costs more than counting lines (measured at 5M rows on
    2 cores: 8.7 s of CPU against 6.9 s).
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        # File reads and numpy release the GIL: the lines are counted while pyarrow parses.
        lines = pool.submit(_count_lines, opener)
        try:
            table = _read_csv(source, wanted, newlines_in_values=False)
        except pa.ArrowInvalid:
            table = None
        if table is not None and table.num_rows + 1 == lines.result():
            return table, True
    return _read_csv(source, wanted, newlines_in_values=True), False


def _read_csv(source: str | pa.Buffer, wanted: list[str], newlines_in_values: bool) -> pa.Table:
    """One multithreaded pyarrow read of the `wanted` columns, none of them ever null."""
    return pa_csv.read_csv(
        source,
        read_options=pa_csv.ReadOptions(block_size=_BLOCK_BYTES),
        parse_options=pa_csv.ParseOptions(newlines_in_values=newlines_in_values),
        convert_options=pa_csv.ConvertOptions(
            include_columns=wanted,
            column_types=dict.fromkeys(wanted, _TEXT),
            # Nothing is null: an empty field stays an empty string (a missing Data_Value or
            # year is recognised later, an empty segment is a name like any other).
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _count_lines(opener: Opener) -> int:
    """The number of lines, ended as pyarrow ends them: by LF, CR or CRLF, or by the end of file."""
    lines = 0
    last = _LF
    block = bytearray(1 << 20)
    with opener() as stream:
        while size := stream.readinto(block):
            data = np.frombuffer(block, dtype=np.uint8, count=size)
            lf = data == _LF
            lines += int(np.count_nonzero(lf))
            if block.find(b"\r", 0, size) >= 0:
                cr = data == _CR
                crlf = int(np.count_nonzero(cr[:-1] & lf[1:])) + (last == _CR and data[0] == _LF)
                lines += int(np.count_nonzero(cr)) - crlf
            last = data[-1]
    return int(lines) + (last not in (_LF, _CR))


def _dictionary_and_indices(column: pa.ChunkedArray) -> tuple[pa.StringArray, np.ndarray]:
    """A dictionary column's distinct strings and, per row, its index into them.

    Each chunk pyarrow read has its own dictionary; combining the chunks unifies them.
    """
    combined = column.combine_chunks()
    return combined.dictionary, _as_numpy(combined.indices, np.int32)


def _as_numpy(array: pa.Array, dtype: type[np.generic]) -> np.ndarray:
    """A read-only, zero-copy view of a fixed-width array without nulls.

    `Array.to_numpy` gives the same, but pyarrow imports pandas (half a second) when it is
    installed, as it also does for any array or scalar built from Python objects.
    """
    offset = array.offset * np.dtype(dtype).itemsize
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array), offset=offset)


def _mask(array: pa.BooleanArray) -> np.ndarray:
    """A boolean array as numpy booleans (pyarrow packs them in bits)."""
    return _as_numpy(array.cast(pa.uint8()), np.uint8).astype(bool)


def _coded(dictionary: pa.StringArray, indices: np.ndarray) -> Coded:
    """Renumber so that code order is name order; only the small dictionary is sorted."""
    names = dictionary.to_pylist()
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int32)
    rank[order] = np.arange(len(names), dtype=np.int32)
    return Coded(tuple(names[index] for index in order), rank.take(indices))


def _numbers(dictionary: pa.StringArray) -> tuple[pa.StringArray, np.ndarray, np.ndarray]:
    """Each distinct string trimmed, whether it is empty, and its float64 value (NaN where it is
    not a CSV number)."""
    text = pc.utf8_trim_whitespace(dictionary)
    empty = _as_numpy(pc.utf8_length(text), np.int32) == 0
    number = pc.match_substring_regex(text, _NUMBER)
    parsed = np.full(len(text), np.nan)
    parsed[_mask(number)] = _as_numpy(text.filter(number).cast(pa.float64()), np.float64)
    return text, empty, parsed


def _first_bad_row(bad: np.ndarray, indices: np.ndarray) -> int:
    """The first row whose distinct string is marked bad."""
    return int(np.flatnonzero(bad.take(indices))[0])


def _values(dictionary: pa.StringArray, indices: np.ndarray, line_of: Callable[[int], int], label: str) -> np.ndarray:
    """Data_Value as float64; empty is NaN (missing); anything else must be a finite number."""
    text, empty, parsed = _numbers(dictionary)
    finite = parsed[np.isfinite(parsed)]
    # A difference from the mean is at most the spread of the values: it must be a finite float too.
    with np.errstate(over="ignore"):
        too_spread = len(finite) > 0 and np.isinf(finite.max() - finite.min())
    faults = (
        (~empty & np.isnan(parsed), "is not a number"),
        (np.isinf(parsed), "is too large"),
        (
            np.abs(parsed) == np.abs(finite).max(initial=0) if too_spread else np.zeros(len(parsed), dtype=bool),
            "is too large: the values' spread passes the largest float64",
        ),
    )
    for bad, problem in faults:
        if bad.any():
            row = _first_bad_row(bad, indices)
            value = text[int(indices[row])].as_py()
            raise DataFileError(f"{label}: line {line_of(row)}, column {VALUE}: {value!r} {problem}")
    return parsed.take(indices)


def _years(
    dictionary: pa.StringArray,
    indices: np.ndarray,
    column: str,
    line_of: Callable[[int], int],
    label: str,
) -> np.ndarray:
    """A year column as int16; an empty cell means no year (it never passes a year filter)."""
    text, empty, parsed = _numbers(dictionary)
    with np.errstate(invalid="ignore"):
        year = np.trunc(parsed)
        bad = ~empty & ~((year >= 0) & (year < 10_000))
    if bad.any():
        row = _first_bad_row(bad, indices)
        value = text[int(indices[row])].as_py()
        raise DataFileError(f"{label}: line {line_of(row)}, column {column}: {value!r} is not a year")
    year[empty] = NO_YEAR
    years: np.ndarray = year.astype(np.int16).take(indices)
    return years


def _records(stream: Stream, label: str) -> Iterator[tuple[int, list[str]]]:
    """Every record with the line it starts on, skipping blank lines as pyarrow does.

    A byte that is not UTF-8 becomes a lone surrogate instead of stopping the scan, so that the
    caller can say in which line and column it is.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text)
    start = 1
    try:
        for row in reader:
            if row:
                yield start, row
            start = reader.line_num + 1
    except csv.Error as error:
        raise DataFileError(f"{label}: line {start}: {error}") from None


def _line_of_row(opener: Opener, row: int, label: str) -> int:
    """The line on which data row `row` (0-based, as pyarrow counts them) starts."""
    with opener() as stream:
        for index, (line, _) in enumerate(_records(stream, label)):
            if index == row + 1:
                return line
    raise DataFileError(f"{label}: row {row + 1} is refused, but a rescan of the file cannot find it")


def _locate_fault(
    opener: Opener, header: list[str], wanted: list[str], label: str, error: pa.ArrowInvalid
) -> DataFileError:
    """Explain a file pyarrow refused (a row of the wrong width, a used field that is not UTF-8)."""
    positions = [header.index(name) for name in wanted]
    with opener() as stream:
        records = _records(stream, label)
        next(records)
        for line, row in records:
            if len(row) != len(header):
                lacking = [name for name, index in zip(wanted, positions, strict=True) if index >= len(row)]
                where = f"line {line}, column {lacking[0]}" if lacking else f"line {line}"
                return DataFileError(f"{label}: {where}: the row has {len(row)} fields, the header {len(header)}")
            for name, index in zip(wanted, positions, strict=True):
                if _UNDECODED.search(row[index]):
                    return DataFileError(f"{label}: line {line}, column {name}: not UTF-8 text")
    return DataFileError(f"{label}: {error}")
