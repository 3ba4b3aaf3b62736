"""Uploaded data sets for a process that shares its jobs (several front-ends, or nodes on Redis).

The list of uploads and their CSVs live in the job store, not in this process's state dir: an
upload to any front-end or node is kept there, and every process loads what it does not have yet
(every second, and at once when a query names a data set it does not know), so a job accepted
anywhere can run anywhere, and a node that starts later loads every kept upload as well. A removed
upload is dropped by every process at its next look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from compute.queries import Query
from server.datasets import DEFAULT, DatasetRegistry
from server.validation import BadRequest, parse_body, parse_query
from store.dataset import Dataset, load_upload, publish
from store.jobstore import JobStore, StoreUnavailable
from store.uploads import DamagedIndex

log = logging.getLogger("lestats.datasets")


class SharedDatasetRegistry(DatasetRegistry):
    """A DatasetRegistry whose uploads are kept in the job store."""

    store: JobStore | None = None
    forget_replies: Callable[[str], None] = staticmethod(lambda name: None)  # the reply cache's, once it exists
    _syncing: asyncio.Lock | None = None

    def _store(self) -> JobStore:
        assert self.store is not None, "the store is attached before the service starts"
        return self.store

    async def restore(self) -> list[str]:
        """Nothing from the state dir: `sync` loads the store's uploads once the store is open."""
        return []

    async def add(self, content: bytes, label: str) -> Dataset:
        """Load an upload (DataFileError if refused; its id is then never used), keep it in the
        store, publish it here."""
        name = await self._store().new_dataset_name()
        loaded = await asyncio.to_thread(load_upload, content, name, label)
        await self._store().keep_dataset(name, label, content)
        return self._adopt(loaded, label)

    async def remove(self, name: str) -> None:
        await self._store().remove_dataset(name)
        self._forget(name)

    def _adopt(self, loaded: Dataset, label: str) -> Dataset:
        dataset = publish(loaded, loaded.catalog.name)
        self._register(dataset)
        self._sources[loaded.catalog.name] = label
        return dataset

    def _forget(self, name: str) -> None:
        dataset = self.datasets.pop(name)
        del self.catalogs[name]
        self._sources.pop(name, None)
        dataset.close()

    async def sync(self) -> None:
        """Load the store's uploads this process lacks, drop those removed (and their cached
        replies). One at a time: two would load the same upload twice."""
        if self._syncing is None:
            self._syncing = asyncio.Lock()
        async with self._syncing:
            await self._sync()

    async def _sync(self) -> None:
        listed = await self._store().datasets()
        for name, label in listed.items():
            if name in self.datasets:
                continue
            content = await self._store().dataset_content(name)
            try:
                loaded = await asyncio.to_thread(load_upload, content, name, label)
            except ValueError as error:
                log.error("uploaded data set %s does not load here: %s", name, error)
                continue
            self._adopt(loaded, label)
            log.info("loaded data set %s (%s), uploaded elsewhere", name, label)
        dropped = [name for name in self.datasets if name != DEFAULT and name not in listed]
        for name in dropped:
            self._forget(name)
            self.forget_replies(name)
            log.info("dropped data set %s, removed elsewhere", name)


# The store's list cannot be read now: this process goes on with what it has (the duty logs why).
UNREADABLE = (StoreUnavailable, DamagedIndex)


async def caught_up(registry: DatasetRegistry) -> None:
    """With a shared store, this process learns of an upload or removal made elsewhere within a
    second; a route about data sets looks in the store first (left as it is if unreadable)."""
    if isinstance(registry, SharedDatasetRegistry):
        with contextlib.suppress(*UNREADABLE):
            await registry.sync()


async def parse_shared(registry: DatasetRegistry, kind: str, body: bytes) -> Query:
    """parse_query; a data set this process does not know yet may have just been uploaded
    elsewhere: look in the store once before refusing."""
    try:
        return parse_query(kind, body, registry.catalogs)
    except BadRequest:
        if not isinstance(registry, SharedDatasetRegistry):
            raise
        named = parse_body(body).get("dataset")
        if not isinstance(named, str) or named in registry.catalogs:
            raise
        with contextlib.suppress(*UNREADABLE):
            await registry.sync()
        return parse_query(kind, body, registry.catalogs)
