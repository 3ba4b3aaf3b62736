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
from store.exactsum import add_by_group, scale_and_limbs

NO_STRATUM = -1
# Mixed-radix keys must fit an int64 (Python ints are exact, so the product is checked before any
# NumPy arithmetic can wrap around); a wider file is grouped by sorting its separate columns.
KEY_LIMIT = 2**63


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
    scale: int  # a cell's "sum" is its values times 2**scale, as `limbs` digits (store/exactsum.py)
    limbs: int

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


def group(key: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of `key` (all in [0, space)), ascending, and each row's index into them.

    When the key space is not much larger than the rows, a table of size `space` groups in linear
    time (5 million rows in a fraction of a second); otherwise `np.unique` sorts.
    """
    if space <= max(4 * len(key), 1 << 20):
        seen = np.zeros(space, dtype=bool)
        seen[key] = True
        distinct = np.flatnonzero(seen)
        index = np.zeros(space, dtype=np.int64)
        index[distinct] = np.arange(len(distinct))
        return distinct, index[key]
    return np.unique(key, return_inverse=True)


def compact(years: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Small codes for a year column (NO_YEAR or 0-9999): (distinct years, codes)."""
    distinct, codes = group(years.astype(np.int64) - NO_YEAR, 10_001 - NO_YEAR)
    return distinct + NO_YEAR, codes


def build_cells(columns: Columns, name: str, source: str) -> tuple[Catalog, dict[str, np.ndarray]]:
    """Group the rows into cells; rows with a missing value add nothing and are dropped.

    A cell's sum is exact (store/exactsum.py): its digits, flattened to one int64 array of
    cells * limbs entries, so every mean over any union of cells is the correctly rounded one.
    A cell's key is one integer (question, state, stratum, years, mixed radix), in that order, so
    ascending keys sort cells by question first and the grouping is a single pass. When that key
    could pass int64 (a wide file), the rows are sorted on the separate columns instead.
    """
    present = ~np.isnan(columns.values)
    values = columns.values[present]
    strata, stratum = _strata(columns)
    if columns.year_start is not None and columns.year_end is not None:
        starts_seen, year_start = compact(columns.year_start[present])
        ends_seen, year_end = compact(columns.year_end[present])
    else:
        starts_seen = ends_seen = np.array([NO_YEAR], dtype=np.int64)
        year_start = year_end = np.zeros(len(values), dtype=np.int64)
    radix = (len(columns.states.names), len(strata) + 1, len(starts_seen), len(ends_seen))
    parts = (columns.states.codes[present], stratum[present] + 1, year_start, year_end)
    question = columns.questions.codes[present].astype(np.int64)
    space = len(columns.questions.names)
    for size in radix:
        space *= size
    if space < KEY_LIMIT:
        cell_question, digits, cell_of_row = _group_by_key(question, parts, radix, max(space, 1))
    else:
        cell_question, digits, cell_of_row = _group_by_sorting(question, parts)
    state_code, stratum_code, year_start_code, year_end_code = digits
    scale, limbs = scale_and_limbs(values)
    sums = add_by_group(limbs, cell_of_row, len(cell_question))
    del limbs
    arrays: dict[str, np.ndarray] = {
        "question_start": np.searchsorted(cell_question, np.arange(len(columns.questions.names) + 1)).astype(np.int64),
        "state": state_code.astype(np.int32),
        "stratum": (stratum_code - 1).astype(np.int32),
        "year_start": starts_seen[year_start_code].astype(np.int16),
        "year_end": ends_seen[year_end_code].astype(np.int16),
        "sum": sums.reshape(-1),
        "count": np.bincount(cell_of_row, minlength=len(cell_question)).astype(np.int64),
    }
    states = len(columns.states.names)
    answered = np.unique(cell_question * states + state_code)
    years = starts_seen[starts_seen != NO_YEAR]
    catalog = Catalog(
        name=name,
        source=source,
        rows=columns.rows,
        questions=columns.questions.names,
        states=columns.states.names,
        strata=strata,
        year_range=(int(years.min()), int(ends_seen.max())) if len(years) else None,
        answered=frozenset(zip((answered // states).tolist(), (answered % states).tolist(), strict=True)),
        scale=scale,
        limbs=sums.shape[1],
    )
    return catalog, arrays


def _group_by_key(
    question: np.ndarray, parts: tuple[np.ndarray, ...], radix: tuple[int, ...], space: int
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Group rows on one mixed-radix key (question, then each part); the key space fits an int64."""
    key = question
    for size, part in zip(radix, parts, strict=True):
        key = key * size + part
    cell_keys, cell_of_row = group(key, space)
    digits = []
    for size in reversed(radix):
        cell_keys, digit = np.divmod(cell_keys, size)
        digits.append(digit)
    return cell_keys, digits[::-1], cell_of_row


def _group_by_sorting(
    question: np.ndarray, parts: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The same grouping without a combined key: a lexicographic sort over the separate columns,
    question first, so cells come out in the same order as ascending keys."""
    columns = [question, *(np.asarray(part, dtype=np.int64) for part in parts)]
    order = np.lexsort(columns[::-1])
    ordered = [column[order] for column in columns]
    starts = np.zeros(len(order), dtype=bool)
    starts[:1] = True
    for column in ordered:
        starts[1:] |= column[1:] != column[:-1]
    cell_of_sorted = np.cumsum(starts) - 1
    cell_of_row = np.empty(len(order), dtype=np.int64)
    cell_of_row[order] = cell_of_sorted
    distinct = [column[starts] for column in ordered]
    return distinct[0], distinct[1:], cell_of_row


def _strata(columns: Columns) -> tuple[tuple[tuple[str, str], ...], np.ndarray]:
    """(category, segment) pairs in sorted order; a row missing either has NO_STRATUM."""
    categories, segments = columns.categories, columns.segments
    pair = categories.codes.astype(np.int64) * len(segments.names) + segments.codes
    usable = np.array([name != "" for name in categories.names], dtype=bool)[categories.codes]
    usable &= np.array([name != "" for name in segments.names], dtype=bool)[segments.codes]
    distinct, inverse = group(pair[usable], max(len(categories.names) * len(segments.names), 1))
    stratum = np.full(len(pair), NO_STRATUM, dtype=np.int32)
    stratum[usable] = inverse
    names = tuple(
        (categories.names[code // len(segments.names)], segments.names[code % len(segments.names)])
        for code in distinct.tolist()
    )
    return names, stratum
