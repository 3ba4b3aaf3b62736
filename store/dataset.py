"""A data set: its catalog (names) and its cell arrays, in process memory or in shared memory.

A published data set's segment also holds its catalog, pickled: a worker reads it once, when it
attaches, so batches name a segment and never carry a catalog (one with 100,000 questions pickles
to megabytes).
"""

from __future__ import annotations

import pickle
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
    def layout_segment(self) -> str | None:
        return self.shared.layout.segment if self.shared else None

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


CATALOG = "catalog"


def _cell_arrays(shared: SharedArrays) -> dict[str, np.ndarray]:
    return {name: view for name, view in shared.views.items() if name != CATALOG}


def publish(dataset: Dataset, tag: str) -> Dataset:
    """Move a data set's arrays, and its pickled catalog, into a new shared segment owned by this process."""
    catalog = np.frombuffer(pickle.dumps(dataset.catalog, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)
    shared = SharedArrays.create(tag, {**dataset.arrays, CATALOG: catalog})
    return Dataset(dataset.catalog, _cell_arrays(shared), shared)


def attach(layout: Layout) -> Dataset:
    """A worker's view of a published data set: no copy, just a mapping of the same pages (the
    segment is the server's own, created mode 0600, so its catalog is trusted)."""
    shared = SharedArrays.attach(layout)
    catalog = pickle.loads(shared.views[CATALOG].tobytes())
    return Dataset(catalog, _cell_arrays(shared), shared)
