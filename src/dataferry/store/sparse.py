"""A sparse clone: ``<dataset>/_sig/sparse.json`` (``ferry clone --version N``).

``{"version": N}``: the clone holds every signed manifest, chunk list and Delta commit of
versions 1..N, but only the data files and deletion vectors version N reads (and those of
the versions pulled after it). Versions before N are listed and verified as a chain, and
cannot be read here.
"""

from __future__ import annotations

import json
from pathlib import Path

from dataferry.errors import StoreError
from dataferry.store.manifest import canonical, write_atomic

SPARSE_FILE = "sparse.json"


def sparse_from(sig: Path) -> int | None:
    """The first version whose files the clone holds, or None for a full dataset."""
    path = sig / SPARSE_FILE
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_bytes())["version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path} is unreadable ({exc}); clone the dataset again") from None


def write_sparse(sig: Path, version: int) -> None:
    write_atomic(sig / SPARSE_FILE, canonical({"version": version}))


def lacks_version(ref: str, version: int, first: int) -> StoreError:
    """The one line a reader gets for a version a sparse clone does not hold."""
    return StoreError(
        f"{ref} here is a sparse clone: it holds the files of version {first} on, not of "
        f"version {version} (cloned with --version {first}); to read version {version}, "
        f"clone it into another store with `ferry clone URL DIR --version {version}`")
