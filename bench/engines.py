"""The nine queries of API.md on three engines, for bench/kernels.py: ours, pandas and DuckDB.

Each engine loads the CSV once (`load`, timed once) and then answers one query per `query` call
(timed per call) with the same dict, in the same order, that our service returns. pandas and DuckDB
work on the rows as read (missing values dropped, text columns as pandas categoricals / DuckDB
ENUMs, both in name order), the idiomatic fast form for each; neither gets our reduction of rows to
cells, which is exactly what is being compared. They are imported when constructed (not inside the timed load), and
only then, so `--engines ours` runs without them installed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compute.queries import LOWER_IS_BETTER, run_query
from store.cells import Catalog
from store.dataset import Dataset, load_dataset

# The CSV columns the queries read, by their names in the CDC header (API.md, "Data").
STATE, QUESTION, VALUE = "LocationDesc", "Question", "Data_Value"
CATEGORY, SEGMENT = "StratificationCategory1", "Stratification1"

Result = dict[str, Any]


class Engine(Protocol):
    """Load a CSV once, then answer queries with the `data` dict of API.md."""

    name: str

    def load(self, path: Path) -> None: ...

    def query(self, kind: str, question: str, state: str | None) -> Result: ...


class Ours:
    """load_dataset + run_query: the service's own loader and kernels, in-process."""

    name = "ours"

    def __init__(self) -> None:
        self.dataset: Dataset | None = None

    def load(self, path: Path) -> None:
        self.dataset = load_dataset(path)

    @property
    def catalog(self) -> Catalog:
        assert self.dataset is not None, "not loaded"
        return self.dataset.catalog

    @property
    def cells(self) -> int:
        assert self.dataset is not None, "not loaded"
        return len(self.dataset.arrays["sum"])

    def query(self, kind: str, question: str, state: str | None) -> Result:
        assert self.dataset is not None, "not loaded"
        return run_query(self.dataset, kind, question, state)


def _best_first_ascending(question: str, best: bool) -> bool:
    """best5 ranks ascending for lower-is-better questions; worst5 the other way."""
    return (question in LOWER_IS_BETTER) == best


class Pandas:
    """A boolean mask on the question (and state), then groupby().mean() on categoricals."""

    name = "pandas"

    def __init__(self) -> None:
        import pandas

        self.pandas = pandas

    def load(self, path: Path) -> None:
        text = (STATE, QUESTION, CATEGORY, SEGMENT)
        frame = self.pandas.read_csv(
            path,
            usecols=[*text, VALUE],
            dtype={**dict.fromkeys(text, "category"), VALUE: "float64"},
            keep_default_na=False,
            na_values={VALUE: [""]},
            encoding="utf-8-sig",
        )
        frame = frame[frame[VALUE].notna()].reset_index(drop=True)
        for column in text:  # categories in name order, so groupby(sort=True) orders as our codes do
            frame[column] = frame[column].cat.reorder_categories(sorted(frame[column].cat.categories))
        self.rows = frame

    def _of(self, question: str, state: str | None = None) -> Any:
        mask = self.rows[QUESTION] == question
        if state is not None:
            mask &= self.rows[STATE] == state
        return self.rows[mask]

    def _state_means(self, question: str) -> Any:
        return self._of(question).groupby(STATE, observed=True, sort=True)[VALUE].mean()

    @staticmethod
    def _by_category(rows: Any, keys: list[str]) -> Result:
        stratified = rows[(rows[CATEGORY] != "") & (rows[SEGMENT] != "")]
        means = stratified.groupby(keys, observed=True, sort=True)[VALUE].mean()
        return {str(key): value for key, value in zip(means.index.tolist(), means.tolist(), strict=True)}

    def query(self, kind: str, question: str, state: str | None) -> Result:
        if kind == "states_mean":
            return self._state_means(question).sort_values(kind="stable").to_dict()
        if kind in ("best5", "worst5"):
            ascending = _best_first_ascending(question, kind == "best5")
            return self._state_means(question).sort_values(ascending=ascending, kind="stable").head(5).to_dict()
        if kind == "global_mean":
            return {"global_mean": float(self._of(question)[VALUE].mean())}
        if kind == "diff_from_mean":
            overall = self._of(question)[VALUE].mean()
            return (overall - self._state_means(question)).sort_values(ascending=False, kind="stable").to_dict()
        if kind == "state_mean":
            return {state: float(self._of(question, state)[VALUE].mean())}
        if kind == "state_diff_from_mean":
            return {state: float(self._of(question)[VALUE].mean() - self._of(question, state)[VALUE].mean())}
        if kind == "mean_by_category":
            return self._by_category(self._of(question), [STATE, CATEGORY, SEGMENT])
        if kind == "state_mean_by_category":
            return {state: self._by_category(self._of(question, state), [CATEGORY, SEGMENT])}
        raise KeyError(kind)


STATE_MEANS = "SELECT state, avg(value) AS mean FROM cdc WHERE question = $question GROUP BY state"
GLOBAL_MEAN = "(SELECT avg(value) FROM cdc WHERE question = $question)"
STRATIFIED = "category IS NOT NULL AND segment IS NOT NULL AND category <> '' AND segment <> ''"
TEXT_COLUMNS = ("state", "question", "category", "segment")

SQL: dict[str, str] = {
    "states_mean": f"{STATE_MEANS} ORDER BY mean, state",
    "best5": f"{STATE_MEANS} ORDER BY mean {{direction}}, state LIMIT 5",
    "worst5": f"{STATE_MEANS} ORDER BY mean {{direction}}, state LIMIT 5",
    "global_mean": f"SELECT 'global_mean', {GLOBAL_MEAN}",
    "diff_from_mean": (
        f"SELECT state, {GLOBAL_MEAN} - avg(value) AS diff FROM cdc WHERE question = $question"
        " GROUP BY state ORDER BY diff DESC, state"
    ),
    "state_mean": "SELECT $state, avg(value) FROM cdc WHERE question = $question AND state = $state",
    "state_diff_from_mean": (
        f"SELECT $state, {GLOBAL_MEAN} - avg(value) FROM cdc WHERE question = $question AND state = $state"
    ),
    "mean_by_category": (
        f"SELECT state, category, segment, avg(value) FROM cdc WHERE question = $question AND {STRATIFIED}"
        " GROUP BY ALL ORDER BY state, category, segment"
    ),
    "state_mean_by_category": (
        f"SELECT category, segment, avg(value) FROM cdc WHERE question = $question AND state = $state"
        f" AND {STRATIFIED} GROUP BY ALL ORDER BY category, segment"
    ),
}


class DuckDB:
    """One in-memory table of the valued rows, text as ENUMs; each query is one parametrised SQL statement."""

    name = "duckdb"

    def __init__(self) -> None:
        import duckdb

        self.connection = duckdb.connect(":memory:")

    def load(self, path: Path) -> None:
        """Read the valued rows, then turn each text column into an ENUM whose values are in name
        order (DuckDB's counterpart of a categorical: compares and groups as small integers)."""
        execute = self.connection.execute
        execute(
            f"""CREATE TEMP TABLE raw AS SELECT "{STATE}" AS state, "{QUESTION}" AS question,
                       CAST("{VALUE}" AS DOUBLE) AS value, "{CATEGORY}" AS category, "{SEGMENT}" AS segment
                FROM read_csv($path, header = true, all_varchar = true)
                WHERE trim(coalesce("{VALUE}", '')) <> ''""",
            {"path": str(path)},
        )
        for column in TEXT_COLUMNS:
            execute(
                f"CREATE TYPE {column}_name AS ENUM (SELECT DISTINCT {column} FROM raw "
                f"WHERE {column} IS NOT NULL ORDER BY 1)"
            )
        casts = ", ".join(f"CAST({column} AS {column}_name) AS {column}" for column in TEXT_COLUMNS)
        execute(f"CREATE TABLE cdc AS SELECT {casts}, value FROM raw")
        execute("DROP TABLE raw")

    def query(self, kind: str, question: str, state: str | None) -> Result:
        sql = SQL[kind]
        if kind in ("best5", "worst5"):
            sql = sql.format(direction="ASC" if _best_first_ascending(question, kind == "best5") else "DESC")
        params = {"question": question} | ({"state": state} if "$state" in sql else {})
        rows = self.connection.execute(sql, params).fetchall()
        if kind == "mean_by_category":
            return {str((state_, category, segment)): mean for state_, category, segment, mean in rows}
        if kind == "state_mean_by_category":
            return {state: {str((category, segment)): mean for category, segment, mean in rows}}
        return dict(rows)


ENGINES: dict[str, type[Ours] | type[Pandas] | type[DuckDB]] = {"ours": Ours, "pandas": Pandas, "duckdb": DuckDB}
