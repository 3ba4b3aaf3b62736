"""The nine queries (and the `trend` extension) as vectorised NumPy functions of a data set's cell arrays.

Each kernel takes one question's contiguous slice of cells (optionally narrowed by years), groups it
(groups are runs of sorted cells), and builds the result dict in the order API.md fixes. Sums are
exact integer digits (store/exactsum.py), so every mean is the correctly rounded mean of its rows,
whichever route asks: a state's `state_mean` is its value in `states_mean`, to the last bit. Orders use a
stable sort over codes that are already in name order, so ties come out alphabetically, exactly as
the original's `sorted(..., reverse=...)` over alphabetically grouped states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from store.cells import NO_STRATUM
from store.csvfile import NO_YEAR
from store.dataset import Dataset
from store.exactsum import exact_mean, exact_means

LOWER_IS_BETTER = frozenset(
    {
        "Percent of adults aged 18 years and older who have an overweight classification",
        "Percent of adults aged 18 years and older who have obesity",
        "Percent of adults who engage in no leisure-time physical activity",
        "Percent of adults who report consuming fruit less than one time daily",
        "Percent of adults who report consuming vegetables less than one time daily",
    }
)
HIGHER_IS_BETTER = frozenset(
    {
        "Percent of adults who achieve at least 150 minutes a week of moderate-intensity aerobic "
        "physical activity or 75 minutes a week of vigorous-intensity aerobic activity (or an "
        "equivalent combination)",
        "Percent of adults who achieve at least 150 minutes a week of moderate-intensity aerobic "
        "physical activity or 75 minutes a week of vigorous-intensity aerobic physical activity and "
        "engage in muscle-strengthening activities on 2 or more days a week",
        "Percent of adults who achieve at least 300 minutes a week of moderate-intensity aerobic "
        "physical activity or 150 minutes a week of vigorous-intensity aerobic activity (or an "
        "equivalent combination)",
        "Percent of adults who engage in muscle-strengthening activities on 2 or more days a week",
    }
)

KNOWN_DIRECTION = LOWER_IS_BETTER | HIGHER_IS_BETTER

Result = dict[str, Any]  # a query's `data`: names to means (or to such a dict, by state)


class Query(NamedTuple):
    """A validated query in codes: cheap to pickle in a batch to a worker."""

    kind: str
    question: int
    state: int = -1
    years: tuple[int, int] | None = None
    dataset: str = "default"


@dataclass(frozen=True)
class Cells:
    """The cells a query reads: one question's, narrowed by years when asked."""

    state: np.ndarray
    stratum: np.ndarray
    sums: np.ndarray  # (cells, limbs) exact digits
    counts: np.ndarray
    year_start: np.ndarray
    year_end: np.ndarray
    scale: int

    def where(self, keep: np.ndarray) -> Cells:
        """The cells where `keep` is true."""
        return Cells(
            self.state[keep],
            self.stratum[keep],
            self.sums[keep],
            self.counts[keep],
            self.year_start[keep],
            self.year_end[keep],
            self.scale,
        )

    def mean(self) -> float:
        """The mean over all these cells."""
        return exact_mean(self.sums.sum(axis=0), int(self.counts.sum()), self.scale)


def select(dataset: Dataset, question: int, years: tuple[int, int] | None) -> Cells:
    arrays = dataset.arrays
    start, stop = arrays["question_start"][question : question + 2]
    part = slice(int(start), int(stop))
    catalog = dataset.catalog
    cells = Cells(
        arrays["state"][part],
        arrays["stratum"][part],
        arrays["sum"].reshape(-1, catalog.limbs)[part],
        arrays["count"][part],
        arrays["year_start"][part],
        arrays["year_end"][part],
        catalog.scale,
    )
    if years is None:
        return cells
    first, last = years
    keep = (cells.year_start != NO_YEAR) & (cells.year_start >= first) & (cells.year_end <= last)
    return cells.where(keep)


def group_means(keys: np.ndarray, cells: Cells) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (one per cell, sorted) and the exact mean of each key's cells.

    Cells are sorted by (question, state, stratum), so within one question's slice the keys of
    every grouping here are already sorted: a group is a run, found in one linear pass.
    """
    if len(keys) == 0:
        return keys, np.zeros(0)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    sums = np.add.reduceat(cells.sums, starts, axis=0)
    return keys[starts], exact_means(sums, np.add.reduceat(cells.counts, starts), cells.scale)


def state_means(cells: Cells) -> tuple[np.ndarray, np.ndarray]:
    return group_means(cells.state, cells)


def ordered(dataset: Dataset, codes: np.ndarray, values: np.ndarray, descending: bool) -> dict[str, float]:
    """{state: value} sorted by value, ties in name order (a stable sort over name-ordered codes)."""
    order = np.argsort(-values if descending else values, kind="stable")
    names = dataset.catalog.states
    return dict(zip([names[code] for code in codes[order].tolist()], values[order].tolist(), strict=True))


def one_state(cells: Cells, state: int) -> Cells:
    mine = cells.state == state
    if not mine.any():
        raise LookupError("no value for that state and question")
    return cells.where(mine)


def lower_is_better(dataset: Dataset, question: int) -> bool:
    text = dataset.catalog.questions[question]
    if text in LOWER_IS_BETTER:
        return True
    if text in HIGHER_IS_BETTER:
        return False
    raise LookupError("which direction is better is not known for this question")


def states_mean(dataset: Dataset, query: Query) -> Result:
    codes, means = state_means(select(dataset, query.question, query.years))
    return ordered(dataset, codes, means, descending=False)


def state_mean(dataset: Dataset, query: Query) -> Result:
    cells = one_state(select(dataset, query.question, query.years), query.state)
    return {dataset.catalog.states[query.state]: cells.mean()}


def best5(dataset: Dataset, query: Query) -> Result:
    codes, means = state_means(select(dataset, query.question, query.years))
    best_first = ordered(dataset, codes, means, descending=not lower_is_better(dataset, query.question))
    return dict(list(best_first.items())[:5])


def worst5(dataset: Dataset, query: Query) -> Result:
    codes, means = state_means(select(dataset, query.question, query.years))
    worst_first = ordered(dataset, codes, means, descending=lower_is_better(dataset, query.question))
    return dict(list(worst_first.items())[:5])


def global_mean(dataset: Dataset, query: Query) -> Result:
    cells = select(dataset, query.question, query.years)
    if not cells.counts.any():
        raise LookupError("no value for that question")
    return {"global_mean": cells.mean()}


def diff_from_mean(dataset: Dataset, query: Query) -> Result:
    cells = select(dataset, query.question, query.years)
    codes, means = state_means(cells)
    return ordered(dataset, codes, cells.mean() - means, descending=True)


def state_diff_from_mean(dataset: Dataset, query: Query) -> Result:
    cells = select(dataset, query.question, query.years)
    mine = one_state(cells, query.state)
    return {dataset.catalog.states[query.state]: cells.mean() - mine.mean()}


def mean_by_category(dataset: Dataset, query: Query) -> Result:
    cells = select(dataset, query.question, query.years)
    stratified = cells.where(cells.stratum != NO_STRATUM)
    strata = len(dataset.catalog.strata)
    codes, means = group_means(stratified.state.astype(np.int64) * strata + stratified.stratum, stratified)
    states, stratum_keys = dataset.catalog.state_reprs, dataset.catalog.stratum_reprs
    names = [f"({states[code // strata]}, {stratum_keys[code % strata]})" for code in codes.tolist()]
    return dict(zip(names, means.tolist(), strict=True))


def state_mean_by_category(dataset: Dataset, query: Query) -> Result:
    cells = one_state(select(dataset, query.question, query.years), query.state)
    stratified = cells.where(cells.stratum != NO_STRATUM)
    codes, means = group_means(stratified.stratum, stratified)
    stratum_keys = dataset.catalog.stratum_reprs
    names = [f"({stratum_keys[code]})" for code in codes.tolist()]
    return {dataset.catalog.states[query.state]: dict(zip(names, means.tolist(), strict=True))}


def trend(dataset: Dataset, query: Query) -> dict[str, float]:
    """{year: mean} per survey year, in year order: one state's series, or every row's without a state.

    A cell is keyed by its YearStart, or "<start>-<end>" when its rows span several years (a YearEnd
    that is empty or equal to YearStart spans none); cells with no YearStart belong to no year and are
    left out. A state with no cell in the years asked gets an empty series, not an error.
    """
    cells = select(dataset, query.question, query.years)
    if query.state >= 0:
        cells = cells.where(cells.state == query.state)
    cells = cells.where(cells.year_start != NO_YEAR)
    start = cells.year_start.astype(np.int64)
    end = cells.year_end.astype(np.int64)
    end = np.where(end == NO_YEAR, start, end)
    span = start * 10_000 + end
    order = np.argsort(span, kind="stable")
    spans, means = group_means(span[order], cells.where(order))
    first, last = np.divmod(spans, 10_000)
    keys = [str(a) if a == b else f"{a}-{b}" for a, b in zip(first.tolist(), last.tolist(), strict=True)]
    return dict(zip(keys, means.tolist(), strict=True))


Kernel = Callable[[Dataset, Query], Result]

KERNELS: dict[str, Kernel] = {
    kernel.__name__: kernel
    for kernel in (
        states_mean,
        state_mean,
        best5,
        worst5,
        global_mean,
        diff_from_mean,
        state_diff_from_mean,
        mean_by_category,
        state_mean_by_category,
        trend,
    )
}

NEEDS_STATE = frozenset({"state_mean", "state_diff_from_mean", "state_mean_by_category"})
EXTENSIONS = frozenset({"trend"})  # not in the original API: other engines need not answer them
MAY_TAKE_STATE = frozenset({"trend"})
NEEDS_DIRECTION = frozenset({"best5", "worst5"})
NEEDS_YEARS = frozenset({"trend"})


def answer(dataset: Dataset, query: Query) -> Result:
    """The `data` of a finished job; LookupError where the data set has no answer."""
    return KERNELS[query.kind](dataset, query)


def run_query(
    dataset: Dataset,
    name: str,
    question: str,
    state: str | None = None,
    years: tuple[int, int] | None = None,
) -> Result:
    """The same by names, for tests and scripts; KeyError for a name the data set lacks."""
    catalog = dataset.catalog
    state_code = catalog.state_codes[state] if state is not None else -1
    return answer(dataset, Query(name, catalog.question_codes[question], state_code, years))
