"""Data sets: the start-up one and those uploaded through POST /api/datasets.

Each lives in its own shared-memory segment owned by the server. An upload is also kept as a file
in the state dir (`datasets/<id>.csv`, listed in `datasets/index.json`) and loaded again at the
next start. Workers learn of new and removed data sets with each batch (see DatasetSync), so
adding one needs no round trip to any worker.

Files are read in a short-lived process (`load_apart`): reading a CSV allocates many times the
cells it reduces to, and a long-lived process keeps what its allocator got (517 MB for a
5M-row file whose cells take 2.8 MB); the child gives it all back when it exits, and the server
keeps only the catalog and the cell arrays it is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import orjson

from compute.worker import DatasetSync, Published
from store.cells import Catalog
from store.dataset import Dataset, load_dataset, load_upload, publish
from store.manager import process_context

log = logging.getLogger("lestats.datasets")

DEFAULT = "default"
INDEX = "index.json"


async def load_apart(path: Path, name: str, label: str | None = None) -> Dataset:
    """`load_dataset` in a process of its own, which exits (returning its memory) once done."""
    loader = ProcessPoolExecutor(max_workers=1, mp_context=process_context())
    try:
        return await asyncio.get_running_loop().run_in_executor(loader, load_dataset, path, name, label)
    finally:
        await asyncio.to_thread(loader.shutdown)


class DatasetRegistry:
    """Every loaded data set by id; touched from the event loop, loading done in threads."""

    def __init__(self, state_dir: Path) -> None:
        self.datasets: dict[str, Dataset] = {}
        self.catalogs: dict[str, Catalog] = {}
        self._dir = state_dir / "datasets"
        self._sources: dict[str, str] = {}

    def _register(self, dataset: Dataset) -> None:
        self.datasets[dataset.catalog.name] = dataset
        self.catalogs[dataset.catalog.name] = dataset.catalog

    async def load_default(self, path: Path) -> Dataset:
        loaded = await load_apart(path, DEFAULT)
        dataset = publish(loaded, DEFAULT)
        self._register(dataset)
        return dataset

    async def restore(self) -> list[str]:
        """Load the uploads a previous run kept; one that no longer loads is logged and skipped."""
        try:
            self._sources = orjson.loads((self._dir / INDEX).read_bytes())
        except FileNotFoundError:
            return []
        except (OSError, orjson.JSONDecodeError) as error:
            log.error("cannot read the list of uploaded data sets: %s", error)
            return []
        restored = []
        for name, source in list(self._sources.items()):
            try:
                loaded = await load_apart(self._dir / f"{name}.csv", name, source)
            except ValueError as error:
                log.error("uploaded data set %s no longer loads: %s", name, error)
                continue
            self._register(publish(loaded, name))
            restored.append(name)
        return restored

    async def add(self, content: bytes, label: str) -> Dataset:
        """Load an upload (DataFileError if it is refused), publish it and keep its file."""
        name = self._new_name()
        self._sources[name] = label  # reserve the id while loading
        try:
            loaded = await asyncio.to_thread(load_upload, content, name, label)
            await asyncio.to_thread(self._keep, name, content)
        except BaseException:
            self._sources.pop(name, None)
            raise
        dataset = publish(loaded, name)
        self._register(dataset)
        return dataset

    async def remove(self, name: str) -> None:
        """Forget an uploaded data set; workers detach with their next batch."""
        dataset = self.datasets.pop(name)
        del self.catalogs[name]
        self._sources.pop(name, None)
        await asyncio.to_thread(self._write_index)
        (self._dir / f"{name}.csv").unlink(missing_ok=True)
        dataset.close()

    def _keep(self, name: str, content: bytes) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        (self._dir / f"{name}.csv").write_bytes(content)
        self._write_index()

    def _new_name(self) -> str:
        taken = {*self.datasets, *self._sources}
        number = 1
        while f"upload{number}" in taken:
            number += 1
        return f"upload{number}"

    def _write_index(self) -> None:
        temporary = self._dir / f"{INDEX}.tmp"
        temporary.write_bytes(orjson.dumps(self._sources))
        os.replace(temporary, self._dir / INDEX)

    def published(self) -> Published:
        """What a new worker needs to attach to every data set."""
        return {name: (dataset.catalog, dataset.layout) for name, dataset in self.datasets.items()}  # type: ignore[misc]

    def describe(self, names: set[str]) -> DatasetSync:
        layouts = {
            name: (dataset.catalog, dataset.layout)
            for name in names
            if name != DEFAULT and (dataset := self.datasets.get(name)) is not None
        }
        return DatasetSync(tuple(self.datasets), layouts)  # type: ignore[arg-type]

    def summary(self, name: str) -> dict:
        catalog = self.catalogs[name]
        return {
            "dataset": name,
            "source": Path(catalog.source).name,
            "rows": catalog.rows,
            "questions": list(catalog.questions),
            "states": list(catalog.states),
            "years": list(catalog.year_range) if catalog.year_range else None,
            "removable": name != DEFAULT,
        }

    def close(self) -> None:
        for dataset in self.datasets.values():
            dataset.close()
        self.datasets.clear()
        self.catalogs.clear()
