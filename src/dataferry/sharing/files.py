"""The files a share serves for one table version, exactly the rows and columns the
consumer's sink gets.

A need that takes the dataset whole (no ``columns``, ``where`` or ``mask``), at a version
without partitions whose columns are stored in their declared types, is served from the
store's own Parquet files: with their deletion vectors to a Delta reader that declared
it reads them (``deletion_vectors``), else only when the version has none.
Otherwise the server derives one file for the consumer and version with the code a sink
delivery uses (``changes.version_rows`` then ``deliver._prepare``: filter, columns,
decoding, masking), under ``<store>/_sharing_cache/<need hash>/<dataset>/<version>/``,
with a ``done.json`` naming the version's manifest hash and the file's SHA-256: a file is
served only while both still match (else it is derived again).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataferry.engine.context import RunContext
from dataferry.engine.deliver import _prepare, mask_key
from dataferry.model.spec import Need
from dataferry.store.changes import version_rows
from dataferry.store.dataset import DatasetStore, Version, declared_types
from dataferry.store.deletion_vectors import DeletionVector
from dataferry.store.delta_log import stats_json
from dataferry.store.file_stats import file_stats
from dataferry.store.storage import decode_batch, store_schema
from dataferry.store.store import Store

CACHE = "_sharing_cache"


@dataclass(frozen=True)
class ServedVector:
    """A stored file's deletion vector, passed through as it is: the file holding it (a
    path under the store root), where it starts there and how many rows it deletes."""

    relative: str
    offset: int
    size: int
    cardinality: int
    id: str


@dataclass(frozen=True)
class ServedFile:
    """A file of a table version: its path under the store root and its add-action facts
    (``deletion_vector``: the rows of it that are deleted, only ever for a Delta reader
    declaring the ``deletionVectors`` feature)."""

    relative: str
    size: int
    stats: str
    id: str
    deletion_vector: ServedVector | None = None

    @property
    def live_rows(self) -> int:
        """Rows of the file in the version: its ``numRecords`` less the deleted ones."""
        rows = int(json.loads(self.stats).get("numRecords", 0))
        return rows - (self.deletion_vector.cardinality if self.deletion_vector else 0)


@dataclass(frozen=True)
class TableFiles:
    """What a query answers for one version: the schema of the files and the files."""

    version: Version
    schema: pa.Schema
    files: list[ServedFile]


def whole(need: Need) -> bool:
    return need.columns is None and need.where is None and not need.mask


def table_files(context: RunContext, consumer: str, need: Need, version: Version,
                signed: bool = False, deletion_vectors: bool = False) -> TableFiles:
    """The files of ``version`` for the consumer; ``signed``: with unsigned integers widened
    to signed types (Delta has none: Delta readers refuse them, see formats.py);
    ``deletion_vectors``: the reader applies them, so stored files that have one are
    served as they are, with it (else such a version is derived without deleted rows)."""
    dataset = context.store.dataset(need.ref)
    entries = dataset.active_files(version.number)
    if signed and any(pa.types.is_unsigned_integer(f.type)
                      for f in _declared_schema(dataset, version)):
        return _derived(context, consumer, need, dataset, version, signed=True)
    stored = whole(need) and not any(e.partition_values for e in entries) \
        and _stored_as_declared(dataset, version)
    if stored and (deletion_vectors or not any(e.deletion_vector for e in entries)):
        base = dataset.path.relative_to(context.store.root)
        files = [ServedFile(str(base / e.path), e.size, stats_json(e, dataset.path), e.hash,
                            _vector(base, e.deletion_vector))
                 for e in entries]
        return TableFiles(version, dataset.arrow_schema(version), files)
    return _derived(context, consumer, need, dataset, version)


def _vector(base: Path, raw: dict[str, Any] | None) -> ServedVector | None:
    """A file entry's deletion vector as served (``base``: the dataset under the root)."""
    if not raw:
        return None
    vector = DeletionVector.from_json(raw)
    return ServedVector(str(base / vector.file), vector.offset, vector.size,
                        vector.cardinality, vector.hash)


def _stored_as_declared(dataset: DatasetStore, version: Version) -> bool:
    """Whether the stored files hold every column in its declared type (unsigned integers,
    uuid, time and wide decimals are stored in another type: those are derived)."""
    return bool(_declared_schema(dataset, version) == dataset.arrow_schema(version))


def _declared_schema(dataset: DatasetStore, version: Version) -> pa.Schema:
    """The schema of the version's columns in their declared types."""
    empty = pa.RecordBatch.from_pylist([], schema=dataset.arrow_schema(version))
    schema: pa.Schema = decode_batch(empty, declared_types(version.manifest.schema)).schema
    return schema


def need_hash(store: Store, consumer: str, need: Need) -> str:
    """The cache folder of one consumer need: a changed need derives its files anew."""
    spec = {"consumer": consumer, "need": need.model_dump(mode="json"),
            "mask": hashlib.sha256(mask_key(store.home)).hexdigest()
            if need.mask else None}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def _derived(context: RunContext, consumer: str, need: Need, dataset: DatasetStore,
             version: Version, signed: bool = False) -> TableFiles:
    import pyarrow.parquet as pq

    folder = (context.store.root / CACHE / need_hash(context.store, consumer, need) / need.ref
              / (f"{version.number:012d}" + ("-signed" if signed else "")))
    data, done = folder / "part-00000.zstd.parquet", folder / "done.json"
    digest = _verified(data, done, version)
    if digest is None:
        folder.mkdir(parents=True, exist_ok=True)
        declared = {c["name"]: c for c in version.manifest.schema["columns"]}
        names = [n for n in (need.columns or list(declared)) if n in declared]
        schema = store_schema([(n, declared[n]["type"], declared[n]["nullable"])
                               for n in names])
        rows = version_rows(dataset, version, names, need.where, schema)
        stream = _prepare(rows, {n: declared[n]["type"] for n in names}, set(need.mask),
                          context.store.home, None)
        target = signed_schema(stream.schema) if signed else stream.schema
        partial = folder / f".part-{uuid.uuid4().hex}.tmp"  # concurrent builders: one wins
        with pq.ParquetWriter(partial, target, compression="zstd") as writer:
            for batch in stream:
                writer.write_batch(batch.cast(target) if signed else batch)
        os.replace(partial, data)
        digest = _sha256(data)
        facts = folder / f".done-{uuid.uuid4().hex}.tmp"
        facts.write_text(json.dumps({"version": version.number, "manifest": version.hash,
                                     "sha256": digest}))
        os.replace(facts, done)
    relative = str(data.relative_to(context.store.root))
    stats = json.dumps(file_stats(data, tight=True), separators=(",", ":"),
                       ensure_ascii=False)
    schema = pq.read_schema(data)
    return TableFiles(version, schema, [ServedFile(relative, data.stat().st_size, stats,
                                                   digest)])


_WIDER = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64(),
          pa.uint64(): pa.decimal128(20, 0)}


def signed_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with each unsigned integer column in the narrowest signed type holding
    all its values (uint64: decimal(20, 0))."""
    return pa.schema([field.with_type(_WIDER.get(field.type, field.type)) for field in schema],
                     metadata=schema.metadata)


def _verified(data: Path, done: Path, version: Version) -> str | None:
    """The derived file's SHA-256 if it is there, whole, and of this very version."""
    if not (data.is_file() and done.is_file()):
        return None
    try:
        facts: dict[str, Any] = json.loads(done.read_text())
    except (OSError, ValueError):
        return None
    digest = _sha256(data)
    return digest if (facts.get("manifest"), facts.get("sha256")) == (version.hash, digest) \
        else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
