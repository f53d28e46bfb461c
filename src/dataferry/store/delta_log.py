"""Writing Delta commits for the store's own changes (merges, appends, replaces).

deltalake writes the commits of partitioned tables; the others are written here: deltalake's transaction API can name no deletion vector, and it commits a
schema that needs a table feature (``timestamp_ntz``) without turning the feature on.
A commit is a JSON-lines file ``_delta_log/<version>.json`` created exclusively (the
dataset's writer lock is held as well), so two writers can never both take a version.
It starts with a ``commitInfo`` shaped as Spark's and delta-rs', and its ``add`` actions
carry per-column statistics (``file_stats``) readers skip files by.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema

from dataferry import __version__
from dataferry.errors import StoreError
from dataferry.store.deletion_vectors import DeletionVector
from dataferry.store.file_stats import file_stats
from dataferry.store.manifest import FileEntry

FEATURE = "deletionVectors"
NTZ_FEATURE = "timestampNtz"
_LEGACY_WRITER_FEATURES = {
    2: ("appendOnly", "invariants"), 3: ("checkConstraints",),
    4: ("changeDataFeed", "generatedColumns"), 5: ("columnMapping",), 6: ("identityColumns",),
}
"""The features each writer version before 7 implied (Delta's table features)."""


def add_action(entry: FileEntry, now_ms: int, *, directory: Path | None = None,
               data_change: bool = True) -> dict[str, Any]:
    """The ``add`` action of ``entry``; with the table's ``directory``, its statistics
    carry each column's bounds and null count (read from the file's footer, see
    ``file_stats``), so readers can skip it; else only its row count."""
    add: dict[str, Any] = {
        "path": entry.path, "partitionValues": dict(entry.partition_values),
        "size": entry.size, "modificationTime": now_ms, "dataChange": data_change,
        "stats": stats_json(entry, directory),
    }
    if entry.deletion_vector:
        add["deletionVector"] = DeletionVector.from_json(entry.deletion_vector).descriptor()
    return {"add": add}


def stats_json(entry: FileEntry, directory: Path | None) -> str:
    """The ``stats`` of ``entry``'s add action (see ``add_action``). numRecords counts the
    rows in the file, deleted ones included (the protocol); a file with a deletion vector
    has wide bounds (``tightBounds: false``): its footer still counts the deleted rows."""
    if directory is None:
        return json.dumps({"numRecords": entry.rows}, separators=(",", ":"))
    stats = file_stats(directory / entry.path, tight=not entry.deletion_vector)
    return json.dumps(stats, separators=(",", ":"), ensure_ascii=False)


def remove_action(entry: FileEntry, now_ms: int, *, data_change: bool = True
                  ) -> dict[str, Any]:
    remove: dict[str, Any] = {
        "path": entry.path, "deletionTimestamp": now_ms, "dataChange": data_change,
        "extendedFileMetadata": True, "partitionValues": dict(entry.partition_values),
        "size": entry.size,
    }
    if entry.deletion_vector:  # a (file, vector) pair is what the log adds and removes
        remove["deletionVector"] = DeletionVector.from_json(entry.deletion_vector).descriptor()
    return {"remove": remove}


def table_changes(table: DeltaTable, schema: pa.Schema, *,
                  deletion_vectors: bool) -> list[dict[str, Any]]:
    """The ``protocol``/``metaData`` actions a commit to ``table`` needs before its files:
    the table features it uses turned on (reader 3, writer 7: deletion vectors when asked,
    ``timestampNtz`` when ``schema`` holds a timestamp without a zone) and the schema,
    when either changes."""
    actions: list[dict[str, Any]] = []
    protocol = table.protocol()
    wanted = {FEATURE} if deletion_vectors else set()
    if naive_timestamps(schema):
        wanted.add(NTZ_FEATURE)
    missing = wanted - set(protocol.reader_features or [])
    if missing:
        # Writer version 7 lists every feature: those that older versions implied too.
        implied = [feature for version, features in _LEGACY_WRITER_FEATURES.items()
                   if version <= protocol.min_writer_version < 7 for feature in features]
        actions.append({"protocol": {
            "minReaderVersion": 3, "minWriterVersion": 7,
            "readerFeatures": sorted({*(protocol.reader_features or []), *missing}),
            "writerFeatures": sorted({*(protocol.writer_features or []), *implied, *missing}),
        }})
    enable = FEATURE in missing
    metadata = table.metadata()
    schema_string = DeltaSchema.from_arrow(schema).to_json()
    if enable or json.loads(schema_string) != json.loads(table.schema().to_json()):
        configuration = dict(metadata.configuration)
        if enable:
            configuration["delta.enableDeletionVectors"] = "true"
        actions.append({"metaData": {
            "id": metadata.id, "name": metadata.name, "description": metadata.description,
            "format": {"provider": "parquet", "options": {}},
            "schemaString": schema_string,
            "partitionColumns": list(metadata.partition_columns),
            "configuration": configuration, "createdTime": metadata.created_time,
        }})
    return actions


def new_table(schema: pa.Schema, now_ms: int) -> list[dict[str, Any]]:
    """The ``protocol`` and ``metaData`` actions that create a table of ``schema``: reader
    1 / writer 2, or reader 3 / writer 7 with ``timestampNtz`` when it holds a timestamp
    without a zone."""
    features = [NTZ_FEATURE] if naive_timestamps(schema) else []
    protocol: dict[str, Any] = {"minReaderVersion": 1, "minWriterVersion": 2}
    if features:
        protocol = {"minReaderVersion": 3, "minWriterVersion": 7,
                    "readerFeatures": features, "writerFeatures": features}
    return [{"protocol": protocol}, {"metaData": {
        "id": str(uuid.uuid4()), "name": None, "description": None,
        "format": {"provider": "parquet", "options": {}},
        "schemaString": DeltaSchema.from_arrow(schema).to_json(),
        "partitionColumns": [], "configuration": {}, "createdTime": now_ms,
    }}]


def naive_timestamps(schema: pa.Schema) -> bool:
    """Whether ``schema`` holds a timestamp without a zone (Delta's ``timestamp_ntz``),
    at any depth."""
    def naive(kind: pa.DataType) -> bool:
        if pa.types.is_timestamp(kind):
            return kind.tz is None
        if pa.types.is_struct(kind):
            return any(naive(field.type) for field in kind)
        if pa.types.is_list(kind) or pa.types.is_large_list(kind):
            return naive(kind.value_type)
        if pa.types.is_map(kind):
            return naive(kind.key_type) or naive(kind.item_type)
        return False

    return any(naive(field.type) for field in schema)


ENGINE = f"dataferry/{__version__}"


def commit_info(operation: str, read_version: int, parameters: dict[str, Any] | None = None,
                metrics: dict[str, int] | None = None,
                started: float | None = None) -> dict[str, Any]:
    """A ``commitInfo`` action shaped as Spark and delta-rs write theirs: parameters and
    metrics as text values (Spark's ``map<string,string>``), the table version read, and
    which engine wrote it."""
    counted = dict(metrics or {})
    if started is not None:
        counted["executionTimeMs"] = int((time.monotonic() - started) * 1000)
    return {"commitInfo": {
        "timestamp": int(time.time() * 1000), "operation": operation,
        "operationParameters": {
            k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
            for k, v in (parameters or {}).items()},
        **({"readVersion": read_version} if read_version >= 0 else {}),
        "isolationLevel": "Serializable",
        # an append reads nothing of the table (Spark's meaning)
        "isBlindAppend": operation == "WRITE" and (parameters or {}).get("mode") == "Append",
        "operationMetrics": {k: str(v) for k, v in counted.items()},
        "engineInfo": ENGINE, "clientVersion": ENGINE,
    }}


def commit(path: Path, version: int, operation: str, actions: list[dict[str, Any]], *,
           parameters: dict[str, Any] | None = None, metrics: dict[str, int] | None = None,
           started: float | None = None) -> bytes:
    """Write ``actions`` as Delta version ``version``; returns the commit's bytes.

    The commit starts with its ``commitInfo`` (see ``commit_info``): ``parameters`` of
    the operation (e.g. a MERGE's predicates) and its ``metrics`` (row and file counts);
    ``started`` (``time.monotonic()`` when the operation began) gives ``executionTimeMs``.
    """
    info = commit_info(operation, version - 1, parameters, metrics, started)
    raw = "".join(json.dumps(a, separators=(",", ":")) + "\n" for a in [info, *actions]).encode()
    target = path / "_delta_log" / f"{version:020d}.json"
    target.parent.mkdir(exist_ok=True)
    try:
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise StoreError(f"Delta version {version} of {path} was written by someone else "
                         "meanwhile; run again") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(raw)
        handle.flush()
        os.fsync(handle.fileno())
    return raw
