"""The store of an ecosystem: every dataset under ``<store>/<team>/<dataset>``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from dataferry.errors import UsageError
from dataferry.model.spec import Ecosystem
from dataferry.store.dataset import SIG, DatasetStore, Version
from dataferry.store.keys import KeyStore
from dataferry.store.mirror import RemoteDataset
from dataferry.store.mirror_cache import DEFAULT_MIRROR_SIZE, MirrorCache, mirror_size
from dataferry.store.objects import Location, ObjectStore


@dataclass(frozen=True)
class Store:
    """Where datasets live (``root``) and where the signing keys live (``home``/keys).

    ``remote``: the store is in a bucket (``store: s3://bucket/prefix``) and ``root`` is
    its local mirror under ``<home>/s3`` (``store.mirror``)."""

    root: Path
    home: Path
    remote: Location | None = None
    mirror_size: int = DEFAULT_MIRROR_SIZE
    """The bound of the mirror's data files (``mirror_cache``; ``mirror_size:``)."""

    @classmethod
    def for_model(cls, model_root: Path, ecosystem: Ecosystem) -> Store:
        home = (model_root / ecosystem.home).resolve()
        store = ecosystem.store
        if store is not None and "://" in store:
            location = Location.parse(store)
            return cls(mirror_root(home, location), home, location,
                       mirror_size(ecosystem.mirror_size))
        root = (model_root / store).resolve() if store else home / "store"
        return cls(root, home)

    @property
    def keys(self) -> KeyStore:
        return KeyStore(self.home)

    @property
    def location(self) -> str:
        """Where the store is, as its owner wrote it: a folder or ``s3://bucket/prefix``."""
        return self.remote.url() if self.remote is not None else str(self.root)

    @cached_property
    def objects(self) -> ObjectStore | None:
        return ObjectStore(self.remote) if self.remote is not None else None

    @cached_property
    def cache(self) -> MirrorCache | None:
        """The size bound and pins of the mirror of a store in a bucket."""
        if self.remote is None:
            return None
        base = self.home / "s3" / self.remote.bucket
        return MirrorCache(self.root, base / "pins" / self.remote.prefix,
                           base / "index" / self.remote.prefix, self.mirror_size)

    def dataset(self, ref: str, *, pull: bool = True) -> DatasetStore:
        """A dataset; in a bucket, its mirror brought in step first (unless not ``pull``:
        for reading a file that is in the mirror already, as files never change)."""
        if self.objects is None or self.remote is None:
            return DatasetStore(self.root, ref)
        team, _, name = ref.partition(".")
        index = self.home / "s3" / self.remote.bucket / "index" / self.remote.prefix / team
        remote = RemoteDataset(self.objects, ref, self.root / team / name,
                               index / f"{name}.json", self.cache)
        if pull:
            remote.pull()
        return DatasetStore(self.root, ref, remote=remote)

    def presigned(self, relative: str, seconds: int) -> str | None:
        """A pre-signed GET URL of a dataset's file (``relative`` to ``root``) when the
        store is in a bucket, valid ``seconds``; None for a local store, and for files
        only the mirror has (names starting with ``_``: the sharing cache)."""
        if self.objects is None or self.remote is None or relative.startswith("_"):
            return None
        return self.objects.presign(self.remote.key(relative), seconds)

    def refs(self) -> list[str]:
        """Every dataset that has a genesis in the store."""
        if self.objects is not None:
            return sorted(f"{team}.{name}" for team, name in self.objects.datasets())
        if not self.root.is_dir():
            return []
        return sorted(
            f"{genesis.parent.parent.parent.name}.{genesis.parent.parent.name}"
            for genesis in self.root.glob("*/*/_sig/genesis.json")
        )


    def heads(self) -> dict[str, int] | None:
        """The head (newest published version) of every dataset that has one, by
        reference, from one walk of a local store: what ``DatasetStore.head_number`` says
        of each, without building a ``DatasetStore`` per dataset and asking for
        datasets with no version at all (a scheduler tick asks about every input).

        None for a store in a bucket: there a dataset is asked about one by one, each
        bringing its mirror in step (``RemoteDataset.pull``)."""
        if self.objects is not None:
            return None
        heads: dict[str, int] = {}
        for team in _directories(str(self.root)):
            for dataset in _directories(team.path):
                numbers = _signed_numbers(os.path.join(dataset.path, SIG, "m"))
                if numbers:
                    heads[f"{team.name}.{dataset.name}"] = max(numbers)
        return heads


def _directories(path: str) -> list[os.DirEntry[str]]:
    """The directories in ``path`` (none when it is missing or not a directory)."""
    try:
        with os.scandir(path) as entries:
            return [entry for entry in entries if entry.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _signed_numbers(directory: str) -> list[int]:
    """The version numbers with a signature in a dataset's ``_sig/m`` (as
    ``DatasetStore.version_numbers`` reads them)."""
    try:
        with os.scandir(directory) as entries:
            return [int(entry.name[:-4]) for entry in entries
                    if entry.name.endswith(".sig") and entry.name[:-4].isdigit()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def store_at(where: str, home: Path | None = None) -> Store:
    """A store named on the command line (``--store``): a folder (it must exist), or
    ``s3://bucket/prefix``, mirrored under ``home`` (``~/.ferry`` unless given) and
    bounded by ``FERRY_MIRROR_SIZE``."""
    home = home if home is not None else Path.home() / ".ferry"
    if "://" in where:
        location = Location.parse(where)
        return Store(mirror_root(home, location), home, location,
                     mirror_size(os.environ.get("FERRY_MIRROR_SIZE") or None))
    path = Path(where)
    if not path.is_dir():
        raise UsageError(f"store directory {where} does not exist (a folder, or "
                         "s3://bucket/prefix)")
    return Store(path.resolve(), home)


def mirror_root(home: Path, location: Location) -> Path:
    """The local mirror of a store in a bucket (a cache: deleting it loses nothing)."""
    return home / "s3" / location.bucket / "store" / location.prefix


def version_summary(dataset: DatasetStore, version: Version) -> dict[str, Any]:
    """The ``ferry log --json`` entry of a version."""
    from dataferry.store.keys import fingerprint

    manifest = version.manifest
    files = dataset.active_files(version.number, fetch=False)
    return {
        "version": version.number,
        "created_at": manifest.created_at,
        "rows": manifest.rows,
        "files": len(files),
        "added": manifest.added_rows,
        "removed": manifest.removed_rows,
        "manifest_hash": version.hash,
        "signer": fingerprint(bytes.fromhex(version.signature.key)),
        "mode": manifest.mode,
        "bytes": sum(f.size for f in files),
        "lineage": list(manifest.lineage),
        "cursor": manifest.cursor,
        "definition": manifest.definition,
    }
