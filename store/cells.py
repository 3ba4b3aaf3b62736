"""Reduce coded rows to cells: one per distinct (question, state, stratum, years) with sum and count.

Every query is a mean over some set of rows, and every set a query can name is a union of cells, so
the cells answer every query exactly as the rows would, at a cost that depends on the number of
distinct cells (at most a few hundred thousand for the CDC schema) and not on the number of rows.
Cells are sorted by question first, so one question's cells are one contiguous slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from store.csvfile import NO_YEAR, Columns

NO_STRATUM = -1

CELL_ARRAYS = ("question_start", "state", "stratum", "year_start", "year_end", "sum", "count")


@dataclass(frozen=True)
class Catalog:
    """What a data set holds, by name: small and picklable, so every worker gets a copy."""

    name: str
    source: str
    rows: int
    questions: tuple[str, ...]
    states: tuple[str, ...]
    strata: tuple[tuple[str, str], ...]
    year_range: tuple[int, int] | None
    answered: frozenset[tuple[int, int]]

    @cached_property
    def question_codes(self) -> dict[str, int]:
        return {question: code for code, question in enumerate(self.questions)}

    @cached_property
    def state_codes(self) -> dict[str, int]:
        return {state: code for code, state in enumerate(self.states)}

    @cached_property
    def state_reprs(self) -> tuple[str, ...]:
        """Each state as it appears inside a by-category key: `str()` of a tuple uses `repr()`."""
        return tuple(repr(state) for state in self.states)

    @cached_property
    def stratum_reprs(self) -> tuple[str, ...]:
        return tuple(f"{category!r}, {segment!r}" for category, segment in self.strata)


def build_cells(columns: Columns, name: str, source: str) -> tuple[Catalog, dict[str, np.ndarray]]:
    """Group the rows into cells; rows with a missing value add nothing and are dropped."""
    present = ~np.isnan(columns.values)
    question = columns.questions.codes[present].astype(np.int64)
    state = columns.states.codes[present].astype(np.int64)
    values = columns.values[present]

    strata, stratum = _strata(columns)
    stratum = stratum[present].astype(np.int64)
    if columns.year_start is not None and columns.year_end is not None:
        year_start = columns.year_start[present].astype(np.int64)
        year_end = columns.year_end[present].astype(np.int64)
    else:
        year_start = year_end = np.full(len(values), NO_YEAR, dtype=np.int64)

    order = np.lexsort((year_end, year_start, stratum, state, question))
    keys = (question, state, stratum, year_start, year_end)
    changes = np.zeros(len(order), dtype=bool)
    changes[:1] = True
    for part in keys:
        sorted_part = part[order]
        changes[1:] |= sorted_part[1:] != sorted_part[:-1]
    starts = np.flatnonzero(changes)
    first_row = order[starts]
    cell_of_row = np.empty(len(order), dtype=np.int64)
    cell_of_row[order] = np.cumsum(changes) - 1
    cells = len(starts)

    cell_question = question[first_row]
    arrays = {
        "question_start": np.searchsorted(
            cell_question, np.arange(len(columns.questions.names) + 1)
        ).astype(np.int64),
        "state": state[first_row].astype(np.int32),
        "stratum": stratum[first_row].astype(np.int32),
        "year_start": year_start[first_row].astype(np.int16),
        "year_end": year_end[first_row].astype(np.int16),
        "sum": np.bincount(cell_of_row, weights=values, minlength=cells),
        "count": np.bincount(cell_of_row, minlength=cells).astype(np.float64),
    }
    years = year_start[year_start != NO_YEAR]
    catalog = Catalog(
        name=name,
        source=source,
        rows=columns.rows,
        questions=columns.questions.names,
        states=columns.states.names,
        strata=strata,
        year_range=(int(years.min()), int(year_end.max())) if len(years) else None,
        answered=frozenset(zip(cell_question.tolist(), arrays["state"].tolist())),
    )
    return catalog, arrays


def _strata(columns: Columns) -> tuple[tuple[tuple[str, str], ...], np.ndarray]:
    """(category, segment) pairs in sorted order; a row missing either has NO_STRATUM."""
    categories, segments = columns.categories, columns.segments
    pair = categories.codes.astype(np.int64) * len(segments.names) + segments.codes
    usable = np.array([name != "" for name in categories.names], dtype=bool)[categories.codes]
    usable &= np.array([name != "" for name in segments.names], dtype=bool)[segments.codes]
    distinct, inverse = np.unique(pair[usable], return_inverse=True)
    stratum = np.full(len(pair), NO_STRATUM, dtype=np.int32)
    stratum[usable] = inverse
    names = tuple(
        (categories.names[code // len(segments.names)], segments.names[code % len(segments.names)])
        for code in distinct.tolist()
    )
    return names, stratum
