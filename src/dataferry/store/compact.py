"""Compaction: rewrite the files that carry deletion vectors, so every Delta reader opens
the table.

After a merge-on-read version the table needs Delta reader version 3 with the
``deletionVectors`` feature; readers without it (deltalake's ``to_pyarrow_table`` and
``to_pyarrow_dataset``, plain Parquet readers) refuse it. ``compact`` writes the live rows
of every file with a deletion vector into new files (the merge's own copy-on-write,
``merge.rewrite_files``) and publishes them as a new signed version with the same rows:

- the Delta commit is an ``OPTIMIZE``: its ``add`` and ``remove`` actions say
  ``dataChange: false``, as Delta's own OPTIMIZE does;
- with no deletion vector left, the same commit drops the ``deletionVectors`` feature
  from the protocol (reader version 1 unless another reader feature remains), so the
  compacted version opens in every reader; older versions keep their protocol and still
  time-travel through the readers that know deletion vectors;
- the manifest says ``mode: compact`` with no row added or removed, and keeps the head's
  cursor and lineage: for the scheduler, deliveries and transforms it is no new data
  (``DatasetStore.same_rows``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from deltalake import DeltaTable

from dataferry.errors import StoreError
from dataferry.store import delta_log
from dataferry.store.dataset import COMPACTED, DatasetStore, Version
from dataferry.store.disk import is_no_room, no_room
from dataferry.store.duck import spilling
from dataferry.store.hashing import FileDigest, hash_bytes
from dataferry.store.keys import KeyStore, public_bytes
from dataferry.store.manifest import (
    FileEntry,
    Manifest,
    Signature,
    files_root,
    utc_now,
    write_atomic,
)
from dataferry.store.merge import rewrite_files
from dataferry.store.publish import recover
from dataferry.store.scan import file_scans
from dataferry.store.signers import may_sign_next
from dataferry.store.verify import verify_for_reading

_CONFIGURATION = "delta.enableDeletionVectors"


@dataclass(frozen=True)
class Compacted:
    """What ``compact`` did."""

    ref: str
    version: int
    """The new version (the head, when nothing needed compacting)."""
    rows: int
    rewritten_files: int
    """Files with deletion vectors replaced by new ones."""
    written_files: int
    bytes: int
    """Bytes of the new files."""
    deleted_rows: int
    """Rows the deletion vectors had hidden and the new files leave out."""
    reader_version: int
    """The Delta reader version the table needs now."""
    seconds: float
    unchanged: bool = False
    """No file had a deletion vector and the protocol had no feature to drop: no version."""

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compact(dataset: DatasetStore, keys: KeyStore) -> Compacted:
    """Rewrite the head's files that carry deletion vectors as a new signed version with
    the same rows, and drop the ``deletionVectors`` feature; see the module doc."""
    started = time.monotonic()
    with dataset.lock():
        head = dataset.head()
        if head is None:
            raise StoreError(f"dataset {dataset.ref} has no published version to compact")
        recover(dataset, head)
        table = DeltaTable(str(dataset.path))
        protocol = table.protocol()
        carrying = [f for f in dataset.active_files(head.number) if f.deletion_vector]
        if not carrying and delta_log.FEATURE not in (protocol.reader_features or []):
            return Compacted(dataset.ref, head.number, head.manifest.rows, 0, 0, 0, 0,
                             protocol.min_reader_version, time.monotonic() - started,
                             unchanged=True)
        verify_for_reading(dataset, head.number)  # never rewrite altered data as signed
        genesis = dataset.genesis()
        key = _signing_key(dataset, head, keys)
        schema = dataset.arrow_schema(head)
        written: list[tuple[FileEntry, FileDigest]] = []
        try:
            with spilling("ferry-compact-") as db:
                written = rewrite_files(db, dataset.path, file_scans(dataset.path, carrying),
                                        schema, genesis.algorithm)
            actions = (_protocol_without_vectors(table)
                       + _files_actions(dataset.path, carrying, written))
            delta_version = table.version() + 1
            raw = delta_log.commit(
                dataset.path, delta_version, "OPTIMIZE", actions,
                parameters={"predicate": [], "targetSize": "", "zOrderBy": []},
                metrics={"numRemovedFiles": len(carrying), "numAddedFiles": len(written),
                         "numDeletionVectorsRemoved": len(carrying),
                         "numRemovedBytes": sum(f.size for f in carrying),
                         "numAddedBytes": sum(e.size for e, _ in written)},
                started=started)
            manifest = _manifest(dataset, head, written, carrying, raw, delta_version)
            body = manifest.to_bytes()
            signature = Signature.create(key, body).to_bytes()
            chunk_lists = [(entry.hash, digest.chunks_bytes()) for entry, digest in written]
            dataset.commit_remote(manifest, body, signature, chunk_lists)
            for file_hash_, chunks in chunk_lists:
                write_atomic(dataset.chunks_path(file_hash_), chunks)
            write_atomic(dataset.manifest_path(manifest.version), body)
            write_atomic(dataset.signature_path(manifest.version), signature)
        except BaseException as error:
            dataset.manifest_path(head.number + 1).unlink(missing_ok=True)
            recover(dataset, head)  # drops the commit no signed manifest covers
            for entry, _ in written:
                (dataset.path / entry.path).unlink(missing_ok=True)
            if is_no_room(error):
                raise no_room(dataset.path) from None
            raise
    reader = DeltaTable(str(dataset.path)).protocol().min_reader_version
    return Compacted(
        dataset.ref, manifest.version, manifest.rows, len(carrying), len(written),
        sum(e.size for e, _ in written), sum(f.rows - f.live_rows for f in carrying), reader,
        time.monotonic() - started)


def _signing_key(dataset: DatasetStore, head: Version, keys: KeyStore) -> Ed25519PrivateKey:
    """The team's key, if it may sign the dataset's next version (never a new one)."""
    key = keys.signing_key(dataset.team, create=False)
    if not may_sign_next(dataset, head, public_bytes(key).hex()):
        raise StoreError(f"the signing key of team {dataset.team} in {keys.directory} is not "
                         f"one that signs {dataset.ref}; compact it where it is published")
    return key


def _protocol_without_vectors(table: DeltaTable) -> list[dict[str, Any]]:
    """The ``protocol`` and ``metaData`` actions that drop the ``deletionVectors``
    feature (nothing when the table does not have it)."""
    protocol = table.protocol()
    if delta_log.FEATURE not in (protocol.reader_features or []):
        return []
    readers = sorted(set(protocol.reader_features or []) - {delta_log.FEATURE})
    writers = sorted(set(protocol.writer_features or []) - {delta_log.FEATURE})
    lowered: dict[str, Any] = {"minReaderVersion": 3 if readers else 1,
                               "minWriterVersion": protocol.min_writer_version}
    if readers:
        lowered["readerFeatures"] = readers
    lowered["writerFeatures"] = writers
    metadata = table.metadata()
    configuration = {k: v for k, v in metadata.configuration.items() if k != _CONFIGURATION}
    return [{"protocol": lowered}, {"metaData": {
        "id": metadata.id, "name": metadata.name, "description": metadata.description,
        "format": {"provider": "parquet", "options": {}},
        "schemaString": table.schema().to_json(),
        "partitionColumns": list(metadata.partition_columns),
        "configuration": configuration, "createdTime": metadata.created_time,
    }}]


def _files_actions(directory: Path, removed: list[FileEntry],
                   written: list[tuple[FileEntry, FileDigest]]) -> list[dict[str, Any]]:
    """``remove`` and ``add`` actions that change no data (``dataChange: false``); the
    new files' statistics carry their columns' bounds, as every file the store writes."""
    now = int(time.time() * 1000)
    actions = [delta_log.remove_action(e, now, data_change=False) for e in removed]
    return actions + [delta_log.add_action(e, now, directory=directory, data_change=False)
                      for e, _ in written]


def _manifest(dataset: DatasetStore, head: Version, written: list[tuple[FileEntry, FileDigest]],
              removed: list[FileEntry], raw: bytes, delta_version: int) -> Manifest:
    """The compacted version: the head's rows, cursor and lineage in new files."""
    algorithm = dataset.genesis().algorithm
    gone = {f.path for f in removed}
    active = [f for f in dataset.active_files(head.number, fetch=False)
              if f.path not in gone]
    active = sorted([*active, *(e for e, _ in written)], key=lambda f: f.path)
    rows = sum(f.live_rows for f in active)
    if rows != head.manifest.rows:
        raise StoreError(f"{dataset.ref}: compaction would leave {rows:,} rows where version "
                         f"{head.number} has {head.manifest.rows:,}; nothing was published")
    return Manifest(
        dataset=dataset.ref, dataset_id=head.manifest.dataset_id, version=head.number + 1,
        created_at=utc_now(), prev=head.hash,
        delta_commit={"version": delta_version, "hash": hash_bytes(algorithm, raw)},
        schema=head.manifest.schema, files=tuple(e for e, _ in written),
        removed=tuple(sorted(gone)), rows=rows, added_rows=0, removed_rows=0,
        root=files_root(algorithm, active), mode=COMPACTED, cursor=head.manifest.cursor,
        lineage=head.manifest.lineage, definition=head.manifest.definition,
    )
