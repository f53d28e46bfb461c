"""``ferry gc``: drop versions beyond retention and files no kept version references.

Dropping the oldest versions would break the hash chain (the first kept manifest's
``prev`` names a manifest that is gone), so gc first writes a signed *checkpoint*: it
records the first kept version, the hash its ``prev`` must equal, the complete file list
of the version before it and the keys allowed at that point. ``verify`` starts the chain
from the checkpoint. Then the old manifests, the data files no kept version needs, the
chunk lists of deleted files, and the leftovers of interrupted publishes are removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dataferry.errors import StoreError
from dataferry.store.dataset import DatasetStore
from dataferry.store.keys import KeyStore, public_bytes
from dataferry.store.manifest import Checkpoint, signed_checkpoint, utc_now, write_atomic
from dataferry.store.publish import recover


@dataclass
class GcResult:
    ref: str
    dropped_versions: list[int] = field(default_factory=list)
    deleted_files: list[str] = field(default_factory=list)
    freed_bytes: int = 0


def collect(dataset: DatasetStore, keys: KeyStore, keep: int | None) -> GcResult:
    """Keep the newest ``keep`` versions (all when None) and delete what nothing needs."""
    result = GcResult(dataset.ref)
    if keep is not None and keep < 1:
        raise StoreError("--keep must be at least 1: gc never drops the latest version")
    with dataset.lock():
        recover(dataset, dataset.head())  # roll back commits of interrupted publishes first
        numbers = dataset.version_numbers()
        if keep is not None and len(numbers) > keep:
            first = numbers[-keep]
            _write_checkpoint(dataset, keys, first)
            for number in numbers[: -keep]:
                dataset.manifest_path(number).unlink(missing_ok=True)
                dataset.signature_path(number).unlink(missing_ok=True)
                result.dropped_versions.append(number)
        _delete_unreferenced(dataset, result)
    return result


def _write_checkpoint(dataset: DatasetStore, keys: KeyStore, first: int) -> None:
    genesis = dataset.genesis()
    allowed = list(genesis.keys)
    existing = dataset.checkpoint()
    if existing is not None:
        allowed = list(existing.keys)
    for number in dataset.version_numbers():
        if number >= first:
            break
        if existing is not None and number < existing.first_version:
            continue
        rotated = dataset.version(number).manifest.keys
        if rotated is not None:
            allowed = list(rotated)
    key = keys.signing_key(dataset.team, create=False)
    if public_bytes(key).hex() not in allowed:
        raise StoreError(f"{dataset.ref}: this machine's key for team {dataset.team} may not "
                         "sign this dataset, so gc cannot write the checkpoint")
    kept = dataset.version(first)
    checkpoint = Checkpoint(
        dataset_id=genesis.dataset_id,
        first_version=first,
        prev=kept.manifest.prev,
        files=tuple(dataset.active_files(first - 1)) if first > 1 else (),
        keys=tuple(allowed),
        created_at=utc_now(),
    )
    # Body and signature in one file, written atomically: a crash leaves the old one whole.
    write_atomic(dataset.checkpoint_path, signed_checkpoint(checkpoint, key))


def _delete_unreferenced(dataset: DatasetStore, result: GcResult) -> None:
    # Only files some kept version reads are needed; the checkpoint's list of older files
    # is there for folding the file lists, not because their bytes are still data.
    needed: set[str] = set()
    hashes: set[str] = set()
    numbers = dataset.version_numbers()
    for number in numbers:
        for entry in dataset.active_files(number):
            needed.add(entry.path)
            hashes.add(entry.hash)
            if entry.deletion_vector:
                needed.add(str(entry.deletion_vector["file"]))
    head = numbers[-1] if numbers else 0
    for path in _data_files(dataset.path):
        rel = path.relative_to(dataset.path).as_posix()
        if rel not in needed:
            result.freed_bytes += path.stat().st_size
            path.unlink()
            result.deleted_files.append(rel)
    chunks = dataset.sig / "c"
    for path in chunks.glob("*.chunks") if chunks.is_dir() else ():
        if path.name.removesuffix(".chunks") not in hashes:
            path.unlink()
    manifests = dataset.sig / "m"
    for path in manifests.iterdir() if manifests.is_dir() else ():
        stem = path.name.split(".")[0]
        unsigned = path.suffix == ".json" and stem.isdigit() and int(stem) > head
        if unsigned or path.name.endswith(".tmp"):
            path.unlink()  # an interrupted publish's manifest or temp file


def _data_files(root: Path) -> list[Path]:
    out = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("_sig", "_delta_log")]
        out += [Path(directory) / name for name in filenames
                if name.endswith((".parquet", ".tmp"))
                or (name.startswith("deletion_vector_") and name.endswith(".bin"))]
    return out
