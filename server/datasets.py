"""Data sets: the start-up one and those uploaded through POST /api/datasets.

Each lives in its own shared-memory segment owned by the server. An upload is also kept as a file
in the state dir (`datasets/<id>.csv`, listed in `datasets/index.json`) and loaded again at the
next start. Workers learn of new and removed data sets with each batch (see DatasetSync), so
adding one needs no round trip to any worker.

Ids are `upload<n>` with n counting up and never reused, not even across restarts (the index keeps
the next n): an id names one file for ever, so nothing keyed by it (a worker's mapping, a cached
reply, a client's notes) can ever meet another file's numbers. The index is rewritten whole, one
writer at a time, through a uniquely named temporary file that is synced before it replaces the
old one, and it lists only uploads that were accepted and whose file is already on disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import orjson

from compute.worker import DatasetSync, Published
from store.cells import Catalog
from store.dataset import Dataset, load_dataset, load_upload, publish

log = logging.getLogger("lestats.datasets")

DEFAULT = "default"
INDEX = "index.json"
UPLOAD = "upload"
_UPLOAD_ID = re.compile(rf"^{UPLOAD}([0-9]{{1,18}})$")
LOADING_AT_ONCE = 2  # uploads parsed at the same time; the others wait their turn (memory)


def upload_number(name: str) -> int:
    match = _UPLOAD_ID.match(name)
    return int(match.group(1)) if match else 0


def write_durably(path: Path, content: bytes) -> None:
    """Replace `path` with `content` all at once: a unique temporary file in the same directory,
    synced, renamed over `path`, then the directory synced so the rename itself survives a crash."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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
        loaded = await asyncio.to_thread(load_dataset, path, DEFAULT)
        dataset = await asyncio.to_thread(publish, loaded, DEFAULT)
        self._register(dataset)
        return dataset

    def _read_index(self) -> dict[str, Any]:
        """The index as written now, or the plain {id: source} of earlier versions."""
        index = orjson.loads((self._dir / INDEX).read_bytes())
        if not isinstance(index, dict):
            raise ValueError("the index is not a JSON object")
        if "datasets" not in index:
            index = {"datasets": index, "next": 1}
        return index

    async def restore(self) -> list[str]:
        """Load the uploads a previous run kept; one that no longer loads is logged and skipped.
        A file the index does not list (an upload cut short by a crash) is removed."""
        try:
            index = await asyncio.to_thread(self._read_index)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as error:
            log.error("cannot read the list of uploaded data sets: %s", error)
            return []
        sources = {str(name): str(source) for name, source in dict(index["datasets"]).items()}
        numbers = [int(index.get("next", 1)), *(upload_number(name) + 1 for name in sources)]
        numbers += [upload_number(path.stem) + 1 for path in self._dir.glob(f"{UPLOAD}*.csv")]
        self._next_number = max(numbers)
        for path in self._dir.glob(f"{UPLOAD}*.csv"):
            if path.stem not in sources:
                log.error("removing %s: an upload the index does not list (cut short by a crash)", path.name)
                path.unlink(missing_ok=True)
        restored = []
        for name, source in sources.items():
            try:
                loaded = await asyncio.to_thread(load_dataset, self._dir / f"{name}.csv", name, source)
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
        async with self._loading:
            loaded = await asyncio.to_thread(load_upload, content, name, label)
            dataset = await asyncio.to_thread(publish, loaded, name)
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
        self._dir.mkdir(parents=True, exist_ok=True)
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
            next_number = max(self._next_number, upload_number(name) + 1)
            write_durably(self._dir / INDEX, orjson.dumps({"next": next_number, "datasets": sources}))
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
