"""``ferry gc``: drop versions beyond retention and files no kept version references.

Dropping the oldest versions would break the hash chain (the first kept manifest's
``prev`` names a manifest that is gone), so gc first writes a signed *checkpoint*: it
records the first kept version, the hash its ``prev`` must equal, the complete file list
of the version before it and the keys allowed at that point. ``verify`` starts the chain
from the checkpoint. Then the old manifests, the data files no kept version needs, the
chunk lists of deleted files, and the leftovers of interrupted publishes are removed.

gc never drops a version a consumer still holds (``holds``): the version a delivery's
sink has, which the next change set starts from, and the versions a running delivery
reads. It learns them from the run history (``RunHistory.held_versions``), not from the
sinks: the metadata can be read without connecting to every consumer, and a delivery
records what its sink has when it succeeds. Kept versions stay a contiguous range (the
hash chain runs through them), so the oldest held version is the first one kept.
``force`` drops them anyway; the next delivery then reloads its sink in full.

The race of a delivery that resolved the head but has not recorded it yet is closed by
a lock: a delivery resolves and records what it reads under ``reading`` (shared), and gc
reads the holds and deletes under the same lock, exclusive.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dataferry.errors import StoreError
from dataferry.store.dataset import DatasetStore
from dataferry.store.keys import KeyStore, public_bytes
from dataferry.store.manifest import Checkpoint, signed_checkpoint, utc_now, write_atomic
from dataferry.store.mirror import ORPHAN_GRACE
from dataferry.store.publish import recover

if TYPE_CHECKING:
    from dataferry.metadata.runs import Hold


@dataclass
class GcResult:
    ref: str
    dropped_versions: list[int] = field(default_factory=list)
    deleted_files: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept: list[Hold] = field(default_factory=list)
    """Holds that kept versions older than ``keep`` (without ``force``)."""
    forced: list[Hold] = field(default_factory=list)
    """Holds ``force`` ignored: those consumers' next delivery reloads in full."""


@contextmanager
def reading(dataset: DatasetStore, exclusive: bool = False) -> Iterator[None]:
    """Held (shared) by a delivery while it resolves and records the versions it will
    read; held exclusive by gc while it reads the holds and drops versions."""
    dataset.sig.mkdir(parents=True, exist_ok=True)
    with (dataset.sig / ".readers.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def collect(dataset: DatasetStore, keys: KeyStore, keep: int | None,
            holds: Callable[[], list[Hold]] | None = None, force: bool = False,
            orphan_grace: float = ORPHAN_GRACE) -> GcResult:
    """Keep the newest ``keep`` versions (all when None) and every version ``holds`` names
    (unless ``force``), and delete what nothing needs. In a bucket, objects no version
    names are deleted once ``orphan_grace`` seconds old (``mirror.RemoteDataset.collect``)."""
    result = GcResult(dataset.ref)
    if keep is not None and keep < 1:
        raise StoreError("--keep must be at least 1: gc never drops the latest version")
    with dataset.lock(), reading(dataset, exclusive=True):
        recover(dataset, dataset.head())  # roll back commits of interrupted publishes first
        numbers = dataset.version_numbers()
        first = numbers[0] if numbers else 0
        if keep is not None and len(numbers) > keep:
            first = numbers[-keep]
            held = [h for h in (holds() if holds is not None else []) if h.version in numbers]
            older = [h for h in held if h.version < first]
            if force:
                result.forced = older
            elif older:
                result.kept = older
                first = min(h.version for h in older)
        if numbers and first > numbers[0]:
            _write_checkpoint(dataset, keys, first)
            for number in [n for n in numbers if n < first]:
                dataset.manifest_path(number).unlink(missing_ok=True)
                dataset.signature_path(number).unlink(missing_ok=True)
                result.dropped_versions.append(number)
        needed, hashes = _delete_unreferenced(dataset, result)
        if dataset.remote is not None:
            result.deleted_files += dataset.remote.collect(
                result.dropped_versions, result.deleted_files, needed, hashes, orphan_grace)
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
        files=tuple(dataset.active_files(first - 1, fetch=False)) if first > 1 else (),
        keys=tuple(allowed),
        created_at=utc_now(),
    )
    # Body and signature in one file, written atomically: a crash leaves the old one whole.
    write_atomic(dataset.checkpoint_path, signed_checkpoint(checkpoint, key))


def _delete_unreferenced(dataset: DatasetStore,
                         result: GcResult) -> tuple[set[str], set[str]]:
    """Delete what no kept version reads; returns the paths and hashes they do read."""
    # Only files some kept version reads are needed; the checkpoint's list of older files
    # is there for folding the file lists, not because their bytes are still data.
    needed: set[str] = set()
    hashes: set[str] = set()
    numbers = dataset.version_numbers()
    for number in numbers:
        for entry in dataset.active_files(number, fetch=False):
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
    return needed, hashes


def _data_files(root: Path) -> list[Path]:
    out = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("_sig", "_delta_log")]
        out += [Path(directory) / name for name in filenames
                if name.endswith((".parquet", ".tmp"))
                or (name.startswith("deletion_vector_") and name.endswith(".bin"))]
    return out
