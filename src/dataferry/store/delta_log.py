"""Writing Delta commits for the store's own changes (merge-on-read, file revisions).

deltalake writes the first commit of a table and the partitioned ones; commits that give
a file a deletion vector are written here, since deltalake's transaction API cannot name
one. A commit is a JSON-lines file ``_delta_log/<version>.json`` created exclusively (the
dataset's writer lock is held as well), so two writers can never both take a version.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema

from dataferry.errors import StoreError
from dataferry.store.deletion_vectors import DeletionVector
from dataferry.store.manifest import FileEntry

FEATURE = "deletionVectors"
_LEGACY_WRITER_FEATURES = {
    2: ("appendOnly", "invariants"), 3: ("checkConstraints",),
    4: ("changeDataFeed", "generatedColumns"), 5: ("columnMapping",), 6: ("identityColumns",),
}
"""The features each writer version before 7 implied (Delta's table features)."""


def add_action(entry: FileEntry, now_ms: int) -> dict[str, Any]:
    add: dict[str, Any] = {
        "path": entry.path, "partitionValues": dict(entry.partition_values),
        "size": entry.size, "modificationTime": now_ms, "dataChange": True,
        # numRecords counts the rows in the file, deleted ones included (the protocol).
        "stats": json.dumps({"numRecords": entry.rows}),
    }
    if entry.deletion_vector:
        add["deletionVector"] = DeletionVector.from_json(entry.deletion_vector).descriptor()
    return {"add": add}


def remove_action(entry: FileEntry, now_ms: int) -> dict[str, Any]:
    remove: dict[str, Any] = {
        "path": entry.path, "deletionTimestamp": now_ms, "dataChange": True,
        "extendedFileMetadata": True, "partitionValues": dict(entry.partition_values),
        "size": entry.size,
    }
    if entry.deletion_vector:  # a (file, vector) pair is what the log adds and removes
        remove["deletionVector"] = DeletionVector.from_json(entry.deletion_vector).descriptor()
    return {"remove": remove}


def table_changes(table: DeltaTable, schema: pa.Schema, *,
                  deletion_vectors: bool) -> list[dict[str, Any]]:
    """The ``protocol``/``metaData`` actions a commit to ``table`` needs before its files:
    deletion vectors turned on (reader 3, writer 7) and the schema, when either changes."""
    actions: list[dict[str, Any]] = []
    protocol = table.protocol()
    enable = deletion_vectors and FEATURE not in (protocol.reader_features or [])
    if enable:
        # Writer version 7 lists every feature: those that older versions implied too.
        implied = [feature for version, features in _LEGACY_WRITER_FEATURES.items()
                   if version <= protocol.min_writer_version < 7 for feature in features]
        actions.append({"protocol": {
            "minReaderVersion": 3, "minWriterVersion": 7,
            "readerFeatures": sorted({*(protocol.reader_features or []), FEATURE}),
            "writerFeatures": sorted({*(protocol.writer_features or []), *implied, FEATURE}),
        }})
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


def commit(path: Path, version: int, operation: str, actions: list[dict[str, Any]]) -> bytes:
    """Write ``actions`` as Delta version ``version``; returns the commit's bytes."""
    info = {"commitInfo": {"timestamp": int(time.time() * 1000), "operation": operation,
                           "engineInfo": "dataferry"}}
    raw = "".join(json.dumps(a, separators=(",", ":")) + "\n" for a in [info, *actions]).encode()
    target = path / "_delta_log" / f"{version:020d}.json"
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
