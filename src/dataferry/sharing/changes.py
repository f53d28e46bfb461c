"""The change data feed of a shared table: per version, what changed for the consumer.

Version ``n`` (after a kept ``n - 1``) becomes one derived file with Delta's
``_change_type`` column: ``insert``, ``update_preimage``, ``update_postimage`` and
``delete`` rows, in the consumer's columns, ``where`` and masks, built from the change set
a ``merge`` delivery gets (``changes.change_set``) and the previous version's rows of the
keys it names (``changes.version_rows``), decoded and masked as a sink's (``deliver``).
The first version is all inserts (the table's own files). Compactions change nothing and
are left out. Needs a primary key among the consumer's columns.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.connectors.base import OP_COLUMN
from dataferry.engine.context import RunContext
from dataferry.engine.deliver import _prepare
from dataferry.model.spec import Need
from dataferry.sharing.files import (
    CACHE,
    ServedFile,
    _sha256,
    need_hash,
    signed_schema,
    table_files,
)
from dataferry.store.changes import change_set, version_rows
from dataferry.store.dataset import DatasetStore, Version
from dataferry.store.file_stats import file_stats
from dataferry.store.storage import store_schema

CHANGE_TYPE = "_change_type"


class ChangesError(ValueError):
    """A change feed that cannot be given (the message says why)."""


@dataclass(frozen=True)
class VersionChange:
    """One version's part of the feed: ``kind`` is ``add`` (all inserts) or ``cdf``."""

    version: Version
    kind: str
    files: list[ServedFile]


def changes(context: RunContext, consumer: str, need: Need, start: int, end: int,
            signed: bool = False) -> list[VersionChange]:
    """``signed``: unsigned integers widened for Delta readers (files.table_files)."""
    dataset = context.store.dataset(need.ref)
    kept = dataset.version_numbers()
    if start not in kept or end not in kept:
        raise ChangesError(f"versions {start} to {end} of {need.ref}: kept are "
                           f"{', '.join(map(str, kept)) or 'none'}")
    found: list[VersionChange] = []
    for number in [n for n in kept if start <= n <= end]:
        version = dataset.version(number)
        if number == kept[0] and number == 1:
            found.append(VersionChange(version, "add",
                                       table_files(context, consumer, need, version,
                                                   signed).files))
            continue
        if number - 1 not in kept:
            raise ChangesError(f"version {number - 1} of {need.ref} is no longer kept "
                               "(ferry gc): start the feed after it")
        if dataset.same_rows(number - 1, number):
            continue
        found.append(VersionChange(version, "cdf", [_derived(
            context, consumer, need, dataset, dataset.version(number - 1), version, signed)]))
    return found


def _derived(context: RunContext, consumer: str, need: Need, dataset: DatasetStore,
             old: Version, new: Version, signed: bool = False) -> ServedFile:
    import pyarrow.parquet as pq

    folder = (context.store.root / CACHE / need_hash(context.store, consumer, need) / need.ref
              / (f"{new.number:012d}.cdf" + ("-signed" if signed else "")))
    data, done = folder / "part-00000.zstd.parquet", folder / "done.json"
    digest = _verified(data, done, old, new)
    if digest is None:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".part-{uuid.uuid4().hex}.tmp"
        writer: pq.ParquetWriter | None = None
        for batch in _rows(context, need, dataset, old, new):
            if signed:
                batch = batch.cast(signed_schema(batch.schema))
            if writer is None:
                writer = pq.ParquetWriter(partial, batch.schema, compression="zstd")
            writer.write_batch(batch)
        assert writer is not None
        writer.close()
        os.replace(partial, data)
        digest = _sha256(data)
        facts = folder / f".done-{uuid.uuid4().hex}.tmp"
        facts.write_text(json.dumps({"old": old.hash, "new": new.hash, "sha256": digest}))
        os.replace(facts, done)
    stats = json.dumps(file_stats(data, tight=True), separators=(",", ":"))
    return ServedFile(str(data.relative_to(context.store.root)), data.stat().st_size, stats,
                      digest)


def _verified(data: Path, done: Path, old: Version, new: Version) -> str | None:
    if not (data.is_file() and done.is_file()):
        return None
    try:
        facts = json.loads(done.read_text())
    except (OSError, ValueError):
        return None
    digest = _sha256(data)
    return digest if facts == {"old": old.hash, "new": new.hash, "sha256": digest} else None


def _rows(context: RunContext, need: Need, dataset: DatasetStore, old: Version,
          new: Version) -> Iterator[pa.RecordBatch]:
    """The version's change rows, decoded and masked, with ``_change_type``; always at
    least one (possibly empty) batch, so the file has its schema."""
    declared = {c["name"]: c for c in new.manifest.schema["columns"]}
    names = [n for n in (need.columns or list(declared)) if n in declared]
    key = list(new.manifest.schema.get("primary_key") or [])
    if not key or not all(k in names for k in key):
        raise ChangesError(f"{need.ref}: a change feed needs the primary key {key or '(none)'} "
                           "among the consumer's columns")
    plain = store_schema([(n, declared[n]["type"], declared[n]["nullable"]) for n in names])
    changed = change_set(dataset, old, new, names, key, need.where,
                         plain.append(pa.field(OP_COLUMN, pa.string(), False))).read_all()
    upserts = changed.filter(pc.equal(changed[OP_COLUMN], "upsert")).drop_columns([OP_COLUMN])
    deleted = changed.filter(pc.equal(changed[OP_COLUMN], "delete"))
    upsert_keys, deleted_keys = _keys(upserts, key), _keys(deleted, key)
    touched = upsert_keys | deleted_keys
    # the previous version streams by; only the rows of changed keys are kept
    before = [_where_keys(pa.Table.from_batches([batch]), key, touched)
              for batch in version_rows(dataset, old, names, need.where, plain)]
    previous = pa.concat_tables(before) if before else plain.empty_table()
    old_keys = _keys(previous, key)
    parts = [
        (_where_keys(previous, key, upsert_keys), "update_preimage"),
        (_where_keys(previous, key, deleted_keys), "delete"),
        (_where_keys(upserts, key, old_keys), "update_postimage"),
        (_where_keys(upserts, key, old_keys, keep=False), "insert"),
    ]
    types = {n: declared[n]["type"] for n in names}
    for rows, kind in parts:
        prepared = _prepare(pa.RecordBatchReader.from_batches(plain, rows.to_batches()), types,
                            set(need.mask), context.store.home, None)
        table = prepared.read_all()
        yield from table.append_column(
            pa.field(CHANGE_TYPE, pa.string(), False),
            pa.array([kind] * table.num_rows, pa.string())).combine_chunks().to_batches(
        ) or [pa.RecordBatch.from_pylist([], schema=table.schema.append(
            pa.field(CHANGE_TYPE, pa.string(), False)))]


def _keys(table: pa.Table, key: list[str]) -> set[tuple[object, ...]]:
    columns = [table[k].to_pylist() for k in key]
    return set(zip(*columns, strict=True))


def _where_keys(table: pa.Table, key: list[str], keys: set[tuple[object, ...]], *,
                keep: bool = True) -> pa.Table:
    columns = [table[k].to_pylist() for k in key]
    mask = [(row in keys) == keep for row in zip(*columns, strict=True)]
    return table.filter(pa.array(mask, pa.bool_())) if mask else table
