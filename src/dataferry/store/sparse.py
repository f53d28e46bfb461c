"""A sparse clone: ``<dataset>/_sig/sparse.json`` (``ferry clone --version N --columns a,b``).

``{"version": N, "columns": [...]}`` (either may be null):

- ``version``: the clone holds every signed manifest, chunk list and Delta commit of
  versions 1..N, but only the data files and deletion vectors version N reads (and those
  of the versions pulled after it). Versions before N are verified as a chain only.
- ``columns``: of each data file the clone holds only the 1 MiB chunks that cover the
  Parquet footer and these columns' column chunks (the file is a sparse file, with holes
  where no chunk was fetched); ``_sig/held/<file-hash>.json`` lists the chunks held.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dataferry.errors import StoreError
from dataferry.store.manifest import canonical, write_atomic

SPARSE_FILE = "sparse.json"
HELD_DIR = "held"


@dataclass(frozen=True)
class Sparse:
    version: int | None = None
    columns: tuple[str, ...] | None = None


def read_sparse(sig: Path) -> Sparse | None:
    """What a sparse clone holds, or None for a full dataset."""
    path = sig / SPARSE_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_bytes())
        version, columns = raw.get("version"), raw.get("columns")
        return Sparse(int(version) if version is not None else None,
                      tuple(str(c) for c in columns) if columns is not None else None)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"{path} is unreadable ({exc}); clone the dataset again") from None


def sparse_from(sig: Path) -> int | None:
    """The first version whose files the clone holds (None: every version's)."""
    sparse = read_sparse(sig)
    return sparse.version if sparse else None


def write_sparse(sig: Path, sparse: Sparse) -> None:
    write_atomic(sig / SPARSE_FILE, canonical(
        {"version": sparse.version,
         "columns": list(sparse.columns) if sparse.columns is not None else None}))


def held_path(sig: Path, file_hash: str) -> Path:
    return sig / HELD_DIR / f"{file_hash}.json"


def read_held(sig: Path, file_hash: str) -> list[int] | None:
    """The chunk numbers held of a file of a column-sparse clone (None: the whole file)."""
    path = held_path(sig, file_hash)
    if not path.is_file():
        return None
    try:
        return [int(n) for n in json.loads(path.read_bytes())["chunks"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path} is unreadable ({exc}); clone the dataset again") from None


def write_held(sig: Path, file_hash: str, chunks: list[int]) -> None:
    write_atomic(held_path(sig, file_hash), canonical({"chunks": sorted(chunks)}))


def lacks_version(ref: str, version: int, first: int) -> StoreError:
    """The one line a reader gets for a version a sparse clone does not hold."""
    return StoreError(
        f"{ref} here is a sparse clone: it holds the files of version {first} on, not of "
        f"version {version} (cloned with --version {first}); to read version {version}, "
        f"clone it into another store with `ferry clone URL DIR --version {version}`")


def lacks_columns(ref: str, missing: list[str], held: tuple[str, ...]) -> StoreError:
    """The one line a reader gets for columns a column-sparse clone does not hold."""
    return StoreError(
        f"{ref} here is a sparse clone holding the columns {', '.join(held)}, not "
        f"{', '.join(missing)}; to read them, clone it into another store with "
        f"`ferry clone URL DIR --columns {','.join([*held, *missing])}`")
