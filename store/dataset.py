"""A data set: its catalog (names) and its cell arrays, in process memory or in shared memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from store.cells import Catalog, build_cells
from store.csvfile import Columns, parse_bytes, read_columns
from store.shm import Layout, SharedArrays


@dataclass
class Dataset:
    """What a query kernel reads. `shared` is set when the arrays live in a shared segment."""

    catalog: Catalog
    arrays: dict[str, np.ndarray]
    shared: SharedArrays | None = None

    @property
    def layout(self) -> Layout | None:
        return self.shared.layout if self.shared else None

    @property
    def shared_bytes(self) -> int:
        return self.shared.layout.size if self.shared else 0

    def close(self) -> None:
        """Release the arrays; the owner of a shared segment also unlinks it."""
        self.arrays = {}
        if self.shared is not None:
            self.shared.close()
            self.shared = None


def from_columns(columns: Columns, name: str, source: str) -> Dataset:
    catalog, arrays = build_cells(columns, name, source)
    return Dataset(catalog, arrays)


def load_dataset(path: str | Path, name: str = "default", label: str | None = None) -> Dataset:
    """Read and reduce a CSV file into an in-process data set."""
    source = label or str(path)
    return from_columns(read_columns(path, source), name, source)


def load_upload(content: bytes, name: str, label: str) -> Dataset:
    """Read and reduce an uploaded CSV held in memory."""
    return from_columns(parse_bytes(content, label), name, label)


def publish(dataset: Dataset, tag: str) -> Dataset:
    """Move a data set's arrays into a new shared segment owned by this process."""
    shared = SharedArrays.create(tag, dataset.arrays)
    return Dataset(dataset.catalog, shared.views, shared)


def attach(catalog: Catalog, layout: Layout) -> Dataset:
    """A worker's view of a published data set: no copy, just a mapping of the same pages."""
    shared = SharedArrays.attach(layout)
    return Dataset(catalog, shared.views, shared)
