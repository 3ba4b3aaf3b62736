"""Uploaded data sets on disk: `datasets/<id>.csv` and the index that lists them.

One format for every mode (one front-end, or the shared ledger of `--frontends N`), so a state dir
written by either starts the other: `{"next": n, "datasets": {id: source}}`, or the plain
`{id: source}` of earlier versions. Ids are `upload<n>` and `next` is the n the next upload gets:
an id is never given twice, not even across restarts, so nothing keyed by it (a worker's mapping, a
cached reply, a client's notes) can ever meet another file's numbers. The index is rewritten
whole, through a uniquely named temporary file that is synced before it replaces the old one.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

import orjson

from store.csvfile import DataFileError

INDEX = "index.json"
UPLOAD = "upload"
_UPLOAD_ID = re.compile(rf"^{UPLOAD}([0-9]{{1,18}})$")


class DamagedIndex(DataFileError):
    """The index cannot be read as one: the server refuses to start rather than give ids again
    or drop the uploads it lists (the message names the file and what is wrong)."""


class UploadIndex(NamedTuple):
    sources: dict[str, str]  # id -> what it was uploaded as
    next_number: int  # above every id ever given, listed or not


def upload_number(name: str) -> int:
    match = _UPLOAD_ID.match(name)
    return int(match.group(1)) if match else 0


def read_index(directory: Path, missing_ok: bool = False) -> UploadIndex:
    """The index (FileNotFoundError if there is none, unless `missing_ok`; DamagedIndex if it is
    not one). `next_number` also passes every listed id and every upload file in the directory."""
    path = directory / INDEX
    try:
        index = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        if not missing_ok:
            raise
        index = {"datasets": {}, "next": 1}
    except orjson.JSONDecodeError as error:
        raise DamagedIndex(f"{path} is not valid JSON ({error}); restore it from a backup, or remove it") from None
    if isinstance(index, dict) and "datasets" not in index:
        index = {"datasets": index, "next": 1}  # the plain {id: source} of earlier versions
    sources, next_number = (index.get("datasets"), index.get("next", 1)) if isinstance(index, dict) else (None, None)
    if not (
        isinstance(sources, dict)
        and all(isinstance(source, str) for source in sources.values())
        and type(next_number) is int  # not a bool
        and next_number >= 1
    ):
        raise DamagedIndex(f"{path} is not an index of uploads ({{'next': n, 'datasets': {{id: source}}}})")
    numbers = [next_number, *(upload_number(name) + 1 for name in sources)]
    numbers += [upload_number(file.stem) + 1 for file in directory.glob(f"{UPLOAD}*.csv")]
    return UploadIndex(sources, max(numbers))


def write_index(directory: Path, index: UploadIndex) -> None:
    write_durably(directory / INDEX, orjson.dumps({"next": index.next_number, "datasets": index.sources}))


def write_durably(path: Path, content: bytes) -> None:
    """Replace `path` with `content` all at once: a unique temporary file in the same directory
    (made if missing), synced, renamed over `path`, then the directory synced so the rename itself
    survives a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
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
