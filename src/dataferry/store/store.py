"""The store of an ecosystem: every dataset under ``<store>/<team>/<dataset>``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataferry.errors import UsageError
from dataferry.model.spec import Ecosystem
from dataferry.store.dataset import DatasetStore, Version
from dataferry.store.keys import KeyStore


@dataclass(frozen=True)
class Store:
    """Where datasets live (``root``) and where the signing keys live (``home``/keys)."""

    root: Path
    home: Path

    @classmethod
    def for_model(cls, model_root: Path, ecosystem: Ecosystem) -> Store:
        home = (model_root / ecosystem.home).resolve()
        store = ecosystem.store
        if store is not None and "://" in store:
            raise UsageError(f"store {store}: only local stores are supported in this version")
        root = (model_root / store).resolve() if store else home / "store"
        return cls(root, home)

    @property
    def keys(self) -> KeyStore:
        return KeyStore(self.home)

    def dataset(self, ref: str) -> DatasetStore:
        return DatasetStore(self.root, ref)

    def refs(self) -> list[str]:
        """Every dataset that has a genesis in the store."""
        if not self.root.is_dir():
            return []
        return sorted(
            f"{genesis.parent.parent.parent.name}.{genesis.parent.parent.name}"
            for genesis in self.root.glob("*/*/_sig/genesis.json")
        )


def version_summary(dataset: DatasetStore, version: Version) -> dict[str, Any]:
    """The ``ferry log --json`` entry of a version."""
    from dataferry.store.keys import fingerprint

    manifest = version.manifest
    files = dataset.active_files(version.number)
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
