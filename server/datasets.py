"""Data sets: the start-up one and those uploaded through POST /api/datasets.

Each lives in its own shared-memory segment owned by the server. An upload is also kept as a file
in the state dir (`datasets/<id>.csv`, listed in `datasets/index.json`) and loaded again at the
next start. Workers learn of new and removed data sets with each batch (see DatasetSync), so
adding one needs no round trip to any worker.

Ids are `upload<n>` with n counting up and never reused, not even across restarts (store/uploads.py
keeps the files and the index, in the same format as the shared ledger of `--frontends N`). The
index is rewritten whole, one writer at a time, and lists only uploads that were accepted and whose
file is already on disk.
Files are read in a short-lived process (`load_apart`): reading a CSV allocates many times the
cells it reduces to, and a long-lived process keeps what its allocator got (517 MB for a
5M-row file whose cells take 2.8 MB); the child gives it all back when it exits, and the server
keeps only the catalog and the cell arrays it is sent.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from compute.worker import DatasetSync, Published
from store.cells import Catalog
from store.csvfile import DataFileError
from store.dataset import Dataset, load_dataset, load_upload, publish
from store.manager import process_context
from store.uploads import UPLOAD, UploadIndex, read_index, upload_number, write_durably, write_index

log = logging.getLogger("lestats.datasets")

DEFAULT = "default"
LOADING_AT_ONCE = 2  # uploads parsed at the same time; the others wait their turn (memory)


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
        self._next_number = 1
        self._index_lock = threading.Lock()
        self._loading = asyncio.Semaphore(LOADING_AT_ONCE)
        self._live: frozenset[str] = frozenset()
        self._listing: tuple[tuple[str, ...] | None, bytes] = (None, b"")

    def _register(self, dataset: Dataset) -> None:
        self.datasets[dataset.catalog.name] = dataset
        self.catalogs[dataset.catalog.name] = dataset.catalog
        self._refresh_live()

    def _refresh_live(self) -> None:
        self._live = frozenset(segment for dataset in self.datasets.values() if (segment := dataset.layout_segment))

    async def load_default(self, path: Path) -> Dataset:
        loaded = await load_apart(path, DEFAULT)
        dataset = await asyncio.to_thread(publish, loaded, DEFAULT)
        self._register(dataset)
        return dataset

    async def restore(self) -> list[str]:
        """Load the uploads a previous run kept; one that no longer loads is logged and skipped.
        A file the index does not list (an upload cut short by a crash) is removed."""
        sources, self._next_number = await asyncio.to_thread(read_index, self._dir, True)
        for path in self._dir.glob(f"{UPLOAD}*.csv"):
            if path.stem not in sources:
                log.error("removing %s: an upload the index does not list (cut short by a crash)", path.name)
                path.unlink(missing_ok=True)
        restored = []
        for name, source in sources.items():
            try:
                loaded = await load_apart(self._dir / f"{name}.csv", name, source)
                dataset = await asyncio.to_thread(publish, loaded, name)
            except (ValueError, OSError) as error:
                log.error("uploaded data set %s no longer loads: %s", name, error)
                continue
            self._sources[name] = source
            self._register(dataset)
            restored.append(name)
        return restored

    async def add(self, content: bytes, label: str) -> Dataset:
        """Load an upload (DataFileError if it is refused), publish it and keep its file.

        The id is taken at once and never given again, whether or not the upload is accepted; the
        index names the upload only once its file is on disk, and the reply is sent only once the
        index is."""
        name = f"{UPLOAD}{self._next_number}"
        self._next_number += 1
        try:
            async with self._loading:
                loaded = await asyncio.to_thread(load_upload, content, name, label)
                dataset = await asyncio.to_thread(publish, loaded, name)
        except DataFileError:
            await asyncio.to_thread(self._forget, name)  # the index keeps the next id: this one is used up
            raise
        try:
            await asyncio.to_thread(self._keep, name, label, content)
        except BaseException:
            dataset.close()
            raise
        self._register(dataset)
        return dataset

    async def remove(self, name: str) -> None:
        """Forget an uploaded data set; workers detach with their next batch, and its jobs still
        queued end with the reason that it was removed."""
        dataset = self.datasets.pop(name)
        del self.catalogs[name]
        self._refresh_live()
        try:
            await asyncio.to_thread(self._forget, name)
        finally:
            dataset.close()

    def _keep(self, name: str, label: str, content: bytes) -> None:
        path = self._dir / f"{name}.csv"
        write_durably(path, content)
        try:
            self._change_index(name, label)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def _forget(self, name: str) -> None:
        self._change_index(name, None)
        (self._dir / f"{name}.csv").unlink(missing_ok=True)

    def _change_index(self, name: str, source: str | None) -> None:
        """Add (a source) or drop (None) one entry and rewrite the index; one writer at a time,
        and the entry changes in memory only once the new index is on disk."""
        with self._index_lock:
            sources = dict(self._sources)
            if source is None:
                sources.pop(name, None)
            else:
                sources[name] = source
            write_index(self._dir, UploadIndex(sources, max(self._next_number, upload_number(name) + 1)))
            self._sources = sources

    def published(self) -> Published:
        """What a new worker needs to attach to every data set."""
        return {name: dataset.layout for name, dataset in self.datasets.items() if dataset.layout is not None}

    def describe(self, names: set[str]) -> DatasetSync:
        """What a batch using the data sets `names` carries: every live segment, and where each
        of its data sets is (a removed one is left out: its jobs end with that reason)."""
        layouts = {
            name: layout
            for name in names
            if (dataset := self.datasets.get(name)) is not None and (layout := dataset.layout) is not None
        }
        return DatasetSync(self._live, layouts)

    def summary(self, name: str) -> dict[str, Any]:
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

    def listing(self) -> bytes:
        """GET /api/datasets' body, built again only when the data sets change (ids are never
        reused, so the ids name the content): a catalog may list 100,000 questions."""
        key = tuple(self.catalogs)
        if self._listing[0] != key:
            self._listing = (key, orjson.dumps({"datasets": [self.summary(name) for name in key]}))
        return self._listing[1]

    def close(self) -> None:
        for dataset in self.datasets.values():
            dataset.close()
        self.datasets.clear()
        self.catalogs.clear()
