"""Publishing a new version of a dataset: data in, a signed, verifiable version out.

The steps, in an order that makes a crash at any point harmless (STORE.md):

1. recover: Delta commits after the last signed manifest (a crash, a failed check) are
   rolled back, so they never leak into the new version;
2. write the Parquet files (hashing them while they are written), or let deltalake write
   them for a partitioned table and hash them afterwards;
3. commit them to the Delta log (``delta_log``: with per-file statistics and a
   ``commitInfo``; deltalake commits a partitioned table's);
4. run the dataset's quality checks over the whole new version; on failure roll back;
5. write the chunk lists, the manifest and, last, its signature: only now is the version
   published. Files of an unpublished attempt are removed by ``ferry gc``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

from dataferry.errors import StoreError
from dataferry.faults import crash_point
from dataferry.model.spec import DatasetCommon
from dataferry.model.types import (
    DataType,
    ListType,
    MapType,
    Primitive,
    StructType,
    contains,
    parse_type,
)
from dataferry.store import delta_log
from dataferry.store.conform import Conformer
from dataferry.store.dataset import DatasetStore, Version
from dataferry.store.delete_limit import DEFAULT_MAX_DELETE_RATIO, check_delete_ratio
from dataferry.store.difference import difference_by_key, wide_rows
from dataferry.store.disk import is_no_room, no_room
from dataferry.store.hashing import FileDigest, hash_file
from dataferry.store.keys import KeyStore, public_bytes
from dataferry.store.manifest import (
    FileEntry,
    Genesis,
    Manifest,
    Signature,
    files_root,
    utc_now,
    write_atomic,
)
from dataferry.store.merge import MergeResult, merge_files
from dataferry.store.parquet_files import write_files
from dataferry.store.primary_key import enforce_unique, with_keys_required
from dataferry.store.quality import enforce_checks
from dataferry.store.scan import file_scans
from dataferry.store.signers import require_signer
from dataferry.store.storage import encode_reader
from dataferry.store.verify import verify_for_reading
from dataferry.streams import read_ahead

Mode = Literal["replace", "merge", "append"]
DEFAULT_ALGORITHM = "blake3"



@dataclass(frozen=True)
class Published:
    """What a publish produced."""

    ref: str
    version: int
    rows: int
    added_rows: int
    removed_rows: int
    files: int
    bytes: int
    manifest_hash: str
    seconds: float
    unchanged: bool = False
    """True when the data held nothing new (merge, append, a replace by key, or the same
    files again): no version was made."""


def declared_columns(spec: DatasetCommon) -> dict[str, Any]:
    """The schema block of a manifest: the declared columns and key, as in the model."""
    return {
        "columns": [
            {"name": name, "type": column.type, "nullable": column.nullable}
            for name, column in spec.columns.items()
        ],
        "primary_key": list(spec.primary_key),
        "version": spec.version,
    }


def publish(
    dataset: DatasetStore,
    spec: DatasetCommon,
    data: pa.RecordBatchReader | Iterable[pa.RecordBatch] | pa.Table,
    *,
    keys: KeyStore,
    mode: Mode = "replace",
    cursor: dict[str, Any] | Callable[[], dict[str, Any] | None] | None = None,
    changed_by: str | None = None,
    lineage: Sequence[dict[str, Any]] = (),
    on_warning: Callable[[str], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
    max_delete_ratio: float | None = DEFAULT_MAX_DELETE_RATIO,
    definition: dict[str, Any] | None = None,
    unique_key: bool = False,
    by_key: bool = False,
    deleted_keys: pa.RecordBatchReader | None = None,
    known_changes: bool = False,
) -> Published:
    """Write ``data`` as the next version of ``dataset`` and sign it; see the module doc.

    ``changed_by``: a cursor column that changes whenever a row does (incremental
    captures), so a merge compares stored rows by key and that column alone.
    ``max_delete_ratio``: the largest share of the previous version's rows a replace may
    remove (None: any, as with ``--allow-delete``); see ``delete_limit``.
    ``definition``: a transformer's (``engine.definition``), recorded in the manifest. A
    transformer's version is made even when its data is the same as the head's if the
    head was computed from other input versions or by another definition: the store then
    says what the data was computed from, and the transform is not due again.
    ``unique_key``: the caller guarantees ``data`` has no two rows with one key (a source
    with a unique constraint on it); a replace, or its keyed difference, then skips
    checking it again.
    ``by_key``: a replace (a snapshot read) of a dataset with a primary key publishes its
    keyed difference from the head, stored merge-on-read like a merge: the rows that are
    new or differ, and deletes of the keys it lacks; nothing different, no version (see
    ``store.difference``).
    ``deleted_keys``: a merge's keys to delete (the primary-key columns only: a change
    log's deletes, ``connectors.changes``), unless ``data`` has a row with that key;
    stored as deletion vectors, like the rows a merge replaces.
    ``known_changes``: a merge's rows are all changes (a change log's upserts): stored rows
    are matched by key alone, without reading their other columns.
    """
    started = time.monotonic()
    if mode == "merge" and not spec.primary_key:
        raise StoreError(f"{dataset.ref}: merge needs a primary key; declare primary_key in "
                         "the model or publish with --mode replace/append")
    key = keys.signing_key(dataset.team)
    spec = with_keys_required(spec)
    conformer = Conformer(dataset.ref, spec.columns, spec.primary_key, on_warning=on_warning)
    conformed = conformer.conform_reader(_as_reader(data))
    if deleted_keys is not None and mode != "merge":
        raise StoreError(f"{dataset.ref}: deleted keys go with a merge, not a {mode}")
    if deleted_keys is not None and spec.partition_by:
        raise StoreError(f"{dataset.ref}: a change log with deletes cannot be published to a "
                         "partitioned dataset yet; remove partition_by or capture snapshots")
    failures: list[BaseException] = []
    with dataset.lock():
        genesis = _ensure_genesis(dataset, public_bytes(key).hex())
        head = dataset.head()
        require_signer(dataset, head, public_bytes(key).hex(), keys.directory)
        base_delta = recover(dataset, head)
        keyed = by_key and mode == "replace" and difference_by_key(
            spec, head, declared_columns(spec))
        if keyed and head is not None:  # the difference is computed from the head's rows
            verify_for_reading(dataset, head.number)
            keyed = not wide_rows(dataset, head)
        rewrite = mode == "replace" and not keyed and not spec.partition_by
        utc = (not rewrite and keeps_utc_timestamps(dataset, head)) or (
            bool(spec.partition_by) and head is None and _timestamp_in_map(spec))
        reader = prefetch(encode_reader(conformed, spec.columns, utc_timestamps=utc), failures)
        deleted = None if deleted_keys is None else _stored_keys(
            dataset.ref, spec, deleted_keys, utc, on_warning)
        try:
            written = _write(dataset, spec, reader, mode, head, genesis.algorithm, on_rows,
                             changed_by, keyed, unique_key, deleted, known_changes)
        except Exception as error:
            if failures:  # deltalake wraps errors of the data it reads: give back the original
                raise failures[0] from None
            if is_no_room(error):  # the Delta log's commit, after the files were written
                raise no_room(dataset.path) from None
            raise
        crash_point("after-commit")
        same_files = head is not None and mode == "replace" and sorted(
            e.hash for e, _ in written.digests) == sorted(
            f.hash for f in dataset.active_files(head.number, fetch=False))
        if head is not None and not _computed_otherwise(head, lineage, definition) and (
                same_files or ((mode != "replace" or keyed) and not (
                written.added_rows or written.removed_rows))):
            _rollback(dataset, base_delta, written)  # nothing changed: no new version
            if same_files:  # byte-identical snapshot: its new copies are not needed
                _remove_files(dataset, written.digests)
            return Published(dataset.ref, head.number, head.manifest.rows, 0, 0, 0, 0,
                             head.hash, time.monotonic() - started, unchanged=True)
        if base_delta is not None and written.delta_version <= base_delta:
            # a version whose data is the head's (new inputs, same rows) with nothing
            # committed: it gets a Delta commit of its own, which changes no file
            written = _commit_nothing(dataset, written, base_delta, mode, started)
        if dataset.remote is not None:  # the version's files kept from the one before
            dataset.remote.ensure(written.active)
        files = file_scans(dataset.path, written.active)
        try:
            if mode == "replace" and head is not None:
                check_delete_ratio(dataset.ref, head.manifest.rows,
                                   sum(f.live_rows for f in written.active), max_delete_ratio)
            if not _merged_by_key(spec, mode, head, keyed) and not (
                    unique_key and mode == "replace"):
                # a merge keeps keys unique itself; a replace of rows the source keeps
                # unique needs no second check
                enforce_unique(dataset.ref, spec.primary_key, files,
                               partitioned=bool(spec.partition_by), appended=mode == "append")
            enforce_checks(dataset.ref, spec.checks, spec.primary_key, files,
                           partitioned=bool(spec.partition_by))
        except Exception:
            _rollback(dataset, base_delta, written)
            _remove_files(dataset, written.digests)  # refused: they belong to nothing
            raise
        except BaseException:  # interrupted: recovery and gc deal with what is left
            _rollback(dataset, base_delta, written)
            raise
        crash_point("before-manifest")
        state = cursor() if callable(cursor) else cursor
        manifest = _manifest(dataset, genesis, head, spec, written, mode, state, lineage,
                             definition)
        raw = manifest.to_bytes()
        signature = Signature.create(key, raw).to_bytes()
        chunk_lists = [(entry.hash, digest.chunks_bytes()) for entry, digest in written.digests]
        try:
            dataset.commit_remote(manifest, raw, signature, chunk_lists)
        except Exception:
            _rollback(dataset, base_delta, written)
            _remove_files(dataset, written.digests)
            raise
        try:
            for file_hash_, chunks in chunk_lists:
                write_atomic(dataset.chunks_path(file_hash_), chunks)
            write_atomic(dataset.manifest_path(manifest.version), raw)
            crash_point("before-signature")
            write_atomic(dataset.signature_path(manifest.version), signature)
        except OSError as error:
            if not is_no_room(error):
                raise
            # Not published: undo the commit and free what this attempt took.
            dataset.manifest_path(manifest.version).unlink(missing_ok=True)
            _rollback(dataset, base_delta, written)
            _remove_files(dataset, written.digests)
            raise no_room(dataset.path) from None
    version = dataset.version(manifest.version)
    return Published(
        dataset.ref, manifest.version, manifest.rows, manifest.added_rows,
        manifest.removed_rows, len(written.digests), sum(e.size for e, _ in written.digests),
        version.hash, time.monotonic() - started,
    )


def keeps_utc_timestamps(dataset: DatasetStore, head: Version | None) -> bool:
    """Whether ``dataset`` stores ``timestamp`` columns as UTC instants, as it did before
    ``timestamp_ntz``: its head declares one and its Delta table lacks the
    ``timestampNtz`` feature. It keeps doing so until a replace rewrites every file."""
    if head is None or not any(
            contains(parse_type(c["type"]), lambda leaf: leaf == Primitive("timestamp"))
            for c in head.manifest.schema["columns"]):
        return False
    try:
        protocol = DeltaTable(str(dataset.path)).protocol()
    except Exception:  # no table to keep a form for
        return False
    return delta_log.NTZ_FEATURE not in (protocol.reader_features or [])


def _timestamp_in_map(spec: DatasetCommon) -> bool:
    """Whether a column is a map holding a ``timestamp``: deltalake (which writes
    partitioned datasets) would not turn ``timestampNtz`` on for it, so such a dataset
    keeps its timestamps as UTC instants, as older datasets do."""
    def in_map(t: DataType, inside: bool = False) -> bool:
        match t:
            case MapType(key, value):
                return in_map(key, True) or in_map(value, True)
            case ListType(item):
                return in_map(item, inside)
            case StructType(fields):
                return any(in_map(f, inside) for _, f in fields)
        return inside and t == Primitive("timestamp")

    return any(in_map(parse_type(c.type)) for c in spec.columns.values())


def _computed_otherwise(head: Version, lineage: Sequence[dict[str, Any]],
                        definition: dict[str, Any] | None) -> bool:
    """Whether a transformer's ``head`` was computed from other input versions or by
    another definition than the data being published (False for other datasets)."""
    if definition is None:
        return False
    recorded = head.manifest
    inputs = [(i.get("ref"), i.get("version")) for i in recorded.lineage]
    return inputs != [(i.get("ref"), i.get("version")) for i in lineage] or (
        recorded.definition or {}).get("fingerprint") != definition.get("fingerprint")


def prefetch(reader: pa.RecordBatchReader, failures: list[BaseException] | None = None,
             depth: int = 4) -> pa.RecordBatchReader:
    """Read (decode, conform) the next batches in a thread while this one writes them.

    At most ``depth`` batches wait in between, so memory stays bounded; an error in the
    reading thread is raised here, in the writer, at the point it happened, and also
    appended to ``failures`` (for callers whose consumer wraps errors).
    """
    batches = read_ahead([lambda: reader], depth=depth, name="ferry-read",
                         on_error=failures.append if failures is not None else None)
    return pa.RecordBatchReader.from_batches(reader.schema, batches)


def _as_reader(data: pa.RecordBatchReader | Iterable[pa.RecordBatch] | pa.Table) -> Any:
    if isinstance(data, pa.Table):
        return data.to_reader()
    return data


def _ensure_genesis(dataset: DatasetStore, public_key: str) -> Genesis:
    if dataset.exists():
        genesis = dataset.genesis()
        return genesis
    genesis = Genesis(dataset.ref, DEFAULT_ALGORITHM, (public_key,), utc_now())
    if dataset.remote is not None:  # the first writer's genesis holds, this one's or not
        return Genesis.from_bytes(dataset.remote.create_genesis(genesis.to_bytes()))
    write_atomic(dataset.genesis_path, genesis.to_bytes())
    return genesis


def _delta_version(dataset: DatasetStore) -> int | None:
    if not (dataset.path / "_delta_log").is_dir():
        return None
    try:
        return DeltaTable(str(dataset.path)).version()
    except Exception:
        return None


def recover(dataset: DatasetStore, head: Version | None) -> int | None:
    """Undo Delta commits that no signed manifest covers; returns the published Delta version."""
    published = head.manifest.delta_commit["version"] if head is not None else None
    latest = _delta_version(dataset)
    if latest is None or latest == published:
        return int(published) if published is not None else None
    if published is None:
        # Nothing was ever published: the table holds only an interrupted first attempt.
        _remove_log(dataset)
        return None
    _drop_commits_after(dataset, int(published))
    return int(published)


def _drop_commits_after(dataset: DatasetStore, published: int) -> None:
    """Delete the Delta commits (and checkpoints) after ``published``: they belong to
    attempts that never became a version, so no reader was ever pointed at them."""
    for entry in dataset.delta_log.iterdir():
        number = entry.name.split(".", 1)[0]
        if number.isdigit() and int(number) > published:
            entry.unlink()
    last = dataset.delta_log / "_last_checkpoint"
    if last.is_file():
        try:
            stale = int(json.loads(last.read_text())["version"]) > published
        except (ValueError, KeyError, TypeError):
            stale = True
        if stale:
            last.unlink()


def _remove_log(dataset: DatasetStore) -> None:
    log = dataset.path / "_delta_log"
    for entry in log.iterdir() if log.is_dir() else ():
        if entry.is_file():
            entry.unlink()
    if log.is_dir():
        for entry in sorted(log.rglob("*"), reverse=True):
            entry.unlink() if entry.is_file() else entry.rmdir()
        log.rmdir()


@dataclass
class _Written:
    delta_version: int
    delta_raw: bytes
    digests: list[tuple[FileEntry, FileDigest]]
    revised: list[FileEntry]
    """Files kept with a new deletion vector (listed in the manifest again, not rehashed)."""
    removed: list[str]
    active: list[FileEntry]
    added_rows: int
    removed_rows: int


def _write(
    dataset: DatasetStore,
    spec: DatasetCommon,
    reader: pa.RecordBatchReader,
    mode: Mode,
    head: Version | None,
    algorithm: str,
    on_rows: Callable[[int], None] | None,
    changed_by: str | None = None,
    keyed: bool = False,
    unique_key: bool = False,
    deleted: pa.RecordBatchReader | None = None,
    known_changes: bool = False,
) -> _Written:
    started = time.monotonic()
    dataset.path.mkdir(parents=True, exist_ok=True)
    previous = {f.path: f for f in dataset.active_files(head.number, fetch=False)} if head else {}
    previous_rows = head.manifest.rows if head else 0
    if head is not None and _merged_by_key(spec, mode, head, keyed):
        merged = merge_files(dataset, head, reader, list(spec.primary_key), algorithm, on_rows,
                             cursor=changed_by, merge_on_read=spec.merge_on_read,
                             complete=mode == "replace", unique=unique_key,
                             deleted=deleted, known_changes=known_changes)
        digests = merged.written
        crash_point("after-files")
        revised = merged.revised
        with _files_removed_if_no_room(dataset, digests):
            delta_version, raw, log_actions = _commit_merge(
                dataset, reader.schema, merged, spec.primary_key, mode == "replace", started)
        metrics = {"added": merged.inserted + merged.updated,
                   "removed": merged.updated + merged.deleted}
    elif spec.partition_by:
        revised = []
        if head is not None:  # deltalake reads the table's files (counts, merges)
            dataset.active_files(head.number)
        metrics = _write_with_deltalake(dataset, spec, reader, mode, head is None)
        delta_version, raw, log_actions = _latest_entry(dataset)
        if head is not None and delta_version <= int(head.manifest.delta_commit["version"]):
            log_actions = []  # deltalake committed nothing: the head's commit is no change
        digests = _hash_added(dataset, log_actions, algorithm)
    else:
        revised = []
        digests = write_files(dataset.path, reader, algorithm, on_rows)
        crash_point("after-files")
        with _files_removed_if_no_room(dataset, digests):
            delta_version, raw, log_actions = _commit_write(
                dataset, reader.schema, [e for e, _ in digests],
                list(previous.values()) if mode == "replace" else None, started,
                first=head is None)
        added = sum(entry.rows for entry, _ in digests)
        metrics = {"added": added, "removed": previous_rows if mode == "replace" else 0}
    removed = [a["remove"]["path"] for a in log_actions if "remove" in a]
    active = dict(previous)
    for path in removed:
        active.pop(path, None)
    for entry in [e for e, _ in digests] + revised:
        active[entry.path] = entry
    return _Written(delta_version, raw, digests, revised, removed, sorted(
        active.values(), key=lambda f: f.path), metrics["added"], metrics["removed"])


def _stored_keys(ref: str, spec: DatasetCommon, keys: pa.RecordBatchReader, utc: bool,
                 on_warning: Callable[[str], None] | None) -> pa.RecordBatchReader:
    """Deleted keys conformed to the declared key columns, in the store's form (so they
    compare with the stored keys exactly as incoming rows do)."""
    missing = [k for k in spec.primary_key if k not in keys.schema.names]
    if missing:
        raise StoreError(f"{ref}: the deleted keys lack the primary-key column(s) "
                         f"{', '.join(missing)}")
    columns = {k: spec.columns[k] for k in spec.primary_key}
    conformer = Conformer(ref, columns, spec.primary_key, on_warning=on_warning)
    return encode_reader(conformer.conform_reader(keys), columns, utc_timestamps=utc)


def _remove_files(dataset: DatasetStore, digests: list[tuple[FileEntry, FileDigest]]) -> None:
    """Delete the data files an attempt wrote and no version references."""
    for entry, _ in digests:
        (dataset.path / entry.path).unlink(missing_ok=True)


@contextlib.contextmanager
def _files_removed_if_no_room(dataset: DatasetStore,
                              digests: list[tuple[FileEntry, FileDigest]]) -> Iterator[None]:
    """A Delta commit that fails for want of space was not made (its log entry could not
    be written), so the files written for it belong to nothing: remove them now, or they
    keep the disk full (gc would find them only later)."""
    try:
        yield
    except BaseException as error:
        if is_no_room(error):
            _remove_files(dataset, digests)
        raise


def _merged_by_key(spec: DatasetCommon, mode: Mode, head: Version | None,
                   keyed: bool = False) -> bool:
    """Whether the store's own merge writes this version (see ``merge``)."""
    return (mode == "merge" or keyed) and head is not None and not spec.partition_by


def _commit_merge(dataset: DatasetStore, schema: pa.Schema, merged: MergeResult,
                  key: Sequence[str], complete: bool,
                  started: float) -> tuple[int, bytes, list[dict[str, Any]]]:
    """Commit a merge's files and deletion vectors as the next Delta version, with a
    ``commitInfo`` saying what the merge did as Spark's MERGE says it."""
    table = DeltaTable(str(dataset.path))
    current = table.version()
    added = [entry for entry, _ in merged.written] + merged.revised
    if not added and not merged.removed:  # nothing changed, nothing committed
        raw, _ = dataset.delta_entry(current)
        return current, raw, []
    now = int(time.time() * 1000)
    actions = delta_log.table_changes(table, schema, deletion_vectors=bool(merged.revised))
    actions += [delta_log.remove_action(e, now) for e in merged.removed + merged.replaced]
    actions += [delta_log.add_action(e, now, directory=dataset.path) for e in added]
    parameters: dict[str, Any] = {
        "predicate": " AND ".join(f"t.{c} = s.{c}" for c in key),
        "matchedPredicates": [{"actionType": "update"}],
        "notMatchedPredicates": [{"actionType": "insert"}],
    }
    if complete:  # a snapshot: stored keys it lacks are deleted
        parameters["notMatchedBySourcePredicates"] = [{"actionType": "delete"}]
    elif merged.deleted:  # a change log's deletes
        parameters["matchedPredicates"].append({"actionType": "delete"})
    output = sum(entry.rows for entry, _ in merged.written)
    metrics = {
        "numTargetRowsInserted": merged.inserted, "numTargetRowsUpdated": merged.updated,
        "numTargetRowsDeleted": merged.deleted,
        "numTargetRowsCopied": max(output - merged.inserted - merged.updated, 0),
        "numOutputRows": output,
        "numTargetFilesAdded": len(merged.written), "numTargetFilesRemoved": len(merged.removed),
        "numTargetDeletionVectorsAdded": len(merged.revised),
        "numTargetDeletionVectorsRemoved": sum(1 for e in merged.replaced if e.deletion_vector),
    }
    raw = delta_log.commit(dataset.path, current + 1, "MERGE", actions,
                           parameters=parameters, metrics=metrics, started=started)
    return current + 1, raw, actions


def _commit_write(dataset: DatasetStore, schema: pa.Schema, added: list[FileEntry],
                  removed: list[FileEntry] | None, started: float, *,
                  first: bool) -> tuple[int, bytes, list[dict[str, Any]]]:
    """Commit written files (and, for a replace, ``removed``: every stored one) as the
    next Delta version, or (``first``) as a new table. Written here rather than by
    deltalake's transaction API, which can commit a schema that needs a table feature
    without turning the feature on (``timestamp_ntz`` columns added to an older table,
    or in a map)."""
    now = int(time.time() * 1000)
    if first:
        current = -1
        actions = delta_log.new_table(schema, now)
    else:
        table = DeltaTable(str(dataset.path))
        current = table.version()
        actions = delta_log.table_changes(table, schema, deletion_vectors=False)
    actions += [delta_log.remove_action(e, now) for e in removed or []]
    actions += [delta_log.add_action(e, now, directory=dataset.path) for e in added]
    metrics = {"numFiles": len(added), "numOutputRows": sum(e.rows for e in added),
               "numOutputBytes": sum(e.size for e in added)}
    if removed is not None:
        metrics["numRemovedFiles"] = len(removed)
    raw = delta_log.commit(dataset.path, current + 1, "WRITE", actions,
                           parameters={"mode": "Append" if removed is None else "Overwrite",
                                       "partitionBy": []},
                           metrics=metrics, started=started)
    return current + 1, raw, actions


def _write_with_deltalake(
    dataset: DatasetStore, spec: DatasetCommon, reader: pa.RecordBatchReader, mode: Mode,
    first: bool,
) -> dict[str, int]:
    uri = str(dataset.path)
    partition_by = list(spec.partition_by) or None
    if mode != "merge" or first:
        table = None if first else DeltaTable(uri)
        before = table.to_pyarrow_dataset().count_rows() if table is not None else 0
        counted = _Counted(reader)
        if mode == "append":
            write_deltalake(uri, counted.reader(), mode="append", partition_by=partition_by)
        else:
            write_deltalake(uri, counted.reader(), mode="overwrite", partition_by=partition_by)
        removed = 0 if mode == "append" else before
        return {"added": counted.rows, "removed": removed}
    predicate = " AND ".join(f't."{c}" = s."{c}"' for c in spec.primary_key)
    changed = " OR ".join(f'(t."{c}" IS DISTINCT FROM s."{c}")' for c in spec.columns
                          if c not in spec.primary_key)
    metrics = (
        DeltaTable(uri)
        .merge(reader, predicate, source_alias="s", target_alias="t")
        .when_matched_update_all(predicate=changed or None)
        .when_not_matched_insert_all()
        .execute()
    )
    inserted = int(metrics.get("num_target_rows_inserted", 0))
    updated = int(metrics.get("num_target_rows_updated", 0))
    return {"added": inserted + updated, "removed": updated}


class _Counted:
    """Counts the rows of a reader as deltalake consumes it."""

    def __init__(self, reader: pa.RecordBatchReader) -> None:
        self._reader = reader
        self.rows = 0

    def reader(self) -> pa.RecordBatchReader:
        def batches() -> Iterable[pa.RecordBatch]:
            for batch in self._reader:
                self.rows += batch.num_rows
                yield batch

        return pa.RecordBatchReader.from_batches(self._reader.schema, batches())


def _latest_entry(dataset: DatasetStore) -> tuple[int, bytes, list[dict[str, Any]]]:
    version = DeltaTable(str(dataset.path)).version()
    raw, actions = dataset.delta_entry(version)
    return version, raw, actions


def _hash_added(dataset: DatasetStore, actions: list[dict[str, Any]],
                algorithm: str) -> list[tuple[FileEntry, FileDigest]]:
    out = []
    for action in actions:
        add = action.get("add")
        if add is None:
            continue
        path = add["path"]
        digest = hash_file(dataset.path / path, algorithm)
        stats = json.loads(add.get("stats") or "{}")
        rows = int(stats.get("numRecords", 0)) if stats else pq.ParquetFile(
            dataset.path / path).metadata.num_rows
        out.append((FileEntry(path, digest.size, digest.hash, rows, digest.chunk_size,
                              digest.chunks_hash(algorithm),
                              dict(add.get("partitionValues") or {})), digest))
    return out


def _commit_nothing(dataset: DatasetStore, written: _Written, base_delta: int, mode: Mode,
                    started: float) -> _Written:
    """Commit a Delta version of no action but its ``commitInfo``, for a version that
    changes no file: each version names a Delta commit of its own (verify holds the
    commit's adds and removes to the manifest's, time travel maps one to the other)."""
    operation = "MERGE" if mode == "merge" or written.revised else "WRITE"
    raw = delta_log.commit(dataset.path, base_delta + 1, operation, [],
                           metrics={"numOutputRows": 0}, started=started)
    return replace(written, delta_version=base_delta + 1, delta_raw=raw)


def _rollback(dataset: DatasetStore, base_delta: int | None, written: _Written) -> None:
    """Undo a commit whose version failed its checks (files are left for ``ferry gc``)."""
    if base_delta is None:
        _remove_log(dataset)
    else:
        _drop_commits_after(dataset, base_delta)


def _manifest(
    dataset: DatasetStore, genesis: Genesis, head: Version | None, spec: DatasetCommon,
    written: _Written, mode: Mode, cursor: dict[str, Any] | None,
    lineage: Sequence[dict[str, Any]], definition: dict[str, Any] | None,
) -> Manifest:
    from dataferry.store.hashing import hash_bytes

    files = tuple(entry for entry, _ in written.digests) + tuple(written.revised)
    return Manifest(
        dataset=dataset.ref,
        dataset_id=genesis.dataset_id,
        version=(head.number + 1) if head else 1,
        created_at=utc_now(),
        prev=head.hash if head else None,
        delta_commit={"version": written.delta_version,
                      "hash": hash_bytes(genesis.algorithm, written.delta_raw)},
        schema=declared_columns(spec),
        files=files,
        removed=tuple(written.removed),
        rows=sum(f.live_rows for f in written.active),
        added_rows=written.added_rows,
        removed_rows=written.removed_rows,
        root=files_root(genesis.algorithm, written.active),
        mode=mode,
        cursor=cursor,
        lineage=tuple(lineage),
        definition=definition,
    )
