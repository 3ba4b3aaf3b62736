"""Read a CDC-schema CSV into integer-coded columns.

Columns are found by header name, never by position, so the original 34-column layout (with its
empty-named index column), the current 33-column CDC release and a file holding only the five
required columns all load. Text columns become small integer codes whose order is the sorted order
of the strings, so sorting codes sorts names; values become float64 with NaN for a missing value.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable

import numpy as np

STATE = "LocationDesc"
QUESTION = "Question"
VALUE = "Data_Value"
CATEGORY = "StratificationCategory1"
SEGMENT = "Stratification1"
YEAR_START = "YearStart"
YEAR_END = "YearEnd"
REQUIRED = (STATE, QUESTION, VALUE, CATEGORY, SEGMENT)

NO_YEAR = -1
# A CSV number: ASCII digits, an optional sign, point and exponent. float() alone would also take
# "1_000", "nan", "inf" and non-ASCII digits.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


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
        with open(path, newline="", encoding="utf-8-sig") as stream:
            return parse_columns(stream, label)
    except UnicodeDecodeError as error:
        raise DataFileError(f"{label}: not UTF-8 text (byte {error.start} of a read block)") from None
    except OSError as error:
        raise DataFileError(f"{label}: cannot read the file: {error.strerror or error}") from None


def parse_bytes(content: bytes, label: str) -> Columns:
    """Load a CSV held in memory (an upload)."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataFileError(f"{label}: not UTF-8 text (byte {error.start})") from None
    return parse_columns(io.StringIO(text, newline=""), label)


def parse_columns(stream: IO[str], label: str) -> Columns:
    """Parse an open text stream; every refusal says where the fault is."""
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        raise DataFileError(f"{label}: the file is empty (line 1): expected a CSV header")
    position = {name: index for index, name in enumerate(header)}
    missing = [name for name in REQUIRED if name not in position]
    if missing:
        raise DataFileError(
            f"{label}: line 1: the header lacks the required column(s) {', '.join(missing)}"
        )
    wanted = [STATE, QUESTION, VALUE, CATEGORY, SEGMENT]
    has_years = YEAR_START in position and YEAR_END in position
    if has_years:
        wanted += [YEAR_START, YEAR_END]
    indexes = [position[name] for name in wanted]
    width = max(indexes) + 1

    columns: list[list[str]] = [[] for _ in wanted]
    appenders = [column.append for column in columns]
    lines: list[int] = []
    for row in reader:
        if len(row) < width:
            if not row or row == [""]:
                continue
            short = wanted[next(i for i, index in enumerate(indexes) if index >= len(row))]
            raise DataFileError(
                f"{label}: line {reader.line_num}, column {short}: the row has only "
                f"{len(row)} fields"
            )
        for append, index in zip(appenders, indexes):
            append(row[index])
        lines.append(reader.line_num)

    states, questions, values, categories, segments = columns[:5]
    return Columns(
        states=encode(states),
        questions=encode(questions),
        categories=encode(categories),
        segments=encode(segments),
        values=parse_values(values, lines, label),
        year_start=parse_years(columns[5], YEAR_START, lines, label) if has_years else None,
        year_end=parse_years(columns[6], YEAR_END, lines, label) if has_years else None,
    )


def encode(texts: list[str]) -> Coded:
    """Codes in first-seen order through a dict, then renumbered so code order is name order."""
    first_seen: dict[str, int] = {}
    raw = np.fromiter(
        (first_seen.setdefault(text, len(first_seen)) for text in texts),
        dtype=np.int32,
        count=len(texts),
    )
    names = sorted(first_seen)
    renumber = np.empty(len(names), dtype=np.int32)
    renumber[[first_seen[name] for name in names]] = np.arange(len(names), dtype=np.int32)
    return Coded(tuple(names), renumber[raw] if len(raw) else raw)


def parse_values(texts: list[str], lines: list[int], label: str) -> np.ndarray:
    """Data_Value as float64; empty is NaN (missing); anything else must be a finite number."""
    values = np.empty(len(texts), dtype=np.float64)
    is_number = _NUMBER.fullmatch
    for index, text in enumerate(texts):
        text = text.strip()
        if not text:
            values[index] = math.nan
        elif is_number(text):
            values[index] = float(text)
        else:
            raise DataFileError(f"{label}: line {lines[index]}, column {VALUE}: {text!r} is not a number")
    if not np.isfinite(values[~np.isnan(values)]).all():
        index = int(np.flatnonzero(np.isinf(values))[0])
        raise DataFileError(f"{label}: line {lines[index]}, column {VALUE}: {texts[index]!r} is too large")
    return values


def parse_years(texts: Iterable[str], column: str, lines: list[int], label: str) -> np.ndarray:
    """A year column as int16; an empty cell means no year (it never passes a year filter)."""
    years = []
    for index, text in enumerate(texts):
        text = text.strip()
        if not text:
            years.append(NO_YEAR)
            continue
        try:
            year = int(float(text))
        except ValueError:
            year = None
        if year is None or not 0 <= year < 10_000:
            raise DataFileError(f"{label}: line {lines[index]}, column {column}: {text!r} is not a year")
        years.append(year)
    return np.array(years, dtype=np.int16)
