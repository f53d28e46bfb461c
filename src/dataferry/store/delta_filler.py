"""Delta commits a clone writes itself, so that a raw Delta reader can read its log.

A clone holds the signed Delta commits of the versions it holds. Where its log would
start late or have gaps, it fills them, never signing them:

- a **base** commit at version 0, for a clone that starts at a ``ferry gc`` checkpoint:
  ``protocol``, ``metaData`` and an ``add`` for every file the signed checkpoint lists
  (the table as it was before the first kept version), so the first signed commit's
  ``remove`` and ``add`` actions apply to the state they were written against;
- a **gap** commit (a ``commitInfo`` only: no change) for every other missing version
  below a signed one.

``ferry verify`` accepts exactly these between and before signed commits
(``filler_problem``); without them deltalake read a clone of a gc'd store as its last
versions' files alone, with no error.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from deltalake import Schema as DeltaSchema

from dataferry.store import delta_log
from dataferry.store.dataset import schema_from_manifest
from dataferry.store.manifest import FileEntry, Manifest

GAP = "dataferry replication gap"
BASE = "dataferry replication base"


def fill_log(path: Path, start: int, below: int, first: Manifest,
             base: tuple[FileEntry, ...] | None) -> None:
    """Write the missing Delta commits from ``start`` to under ``below`` (see the module):
    the base at 0 from ``base`` (a checkpoint's files) when there is one, else gaps."""
    log = path / "_delta_log"
    for version in range(start, below):
        if (log / f"{version:020d}.json").is_file():
            continue
        now = int(time.time() * 1000)
        if version == 0 and base is not None:
            delta_log.commit(path, 0, BASE, _base_actions(first, base, now))
        else:
            delta_log.commit(path, version, GAP, [])


def _base_actions(first: Manifest, files: tuple[FileEntry, ...], now: int
                  ) -> list[dict[str, Any]]:
    schema = schema_from_manifest(first.schema)
    features = [delta_log.NTZ_FEATURE] if delta_log.naive_timestamps(schema) else []
    vectors = any(f.deletion_vector for f in files)
    if vectors:
        features.append(delta_log.FEATURE)
    protocol: dict[str, Any] = {"minReaderVersion": 1, "minWriterVersion": 2}
    if features:
        protocol = {"minReaderVersion": 3, "minWriterVersion": 7,
                    "readerFeatures": features, "writerFeatures": features}
    partitions = sorted({k for f in files for k in f.partition_values})
    metadata = {"metaData": {
        "id": str(uuid.uuid4()), "name": None, "description": None,
        "format": {"provider": "parquet", "options": {}},
        "schemaString": DeltaSchema.from_arrow(schema).to_json(),
        "partitionColumns": partitions,
        "configuration": {"delta.enableDeletionVectors": "true"} if vectors else {},
        "createdTime": now,
    }}
    return [{"protocol": protocol}, metadata,
            *(delta_log.add_action(f, now) for f in sorted(files, key=lambda f: f.path))]


def filler_problem(raw: bytes, version: int, base: tuple[FileEntry, ...] | None) -> str | None:
    """Why the Delta commit ``version``, which no signed manifest names, is not a filler
    this module writes (None: it is one)."""
    try:
        actions = [json.loads(line) for line in raw.splitlines() if line.strip()]
        operation = actions[0]["commitInfo"]["operation"]
    except (ValueError, KeyError, IndexError, TypeError):
        return "a Delta commit no signed version names, and not a replication filler"
    kinds = [next(iter(a)) for a in actions]
    if operation == GAP and kinds == ["commitInfo"]:
        return None
    if operation == BASE and version == 0 and base is not None and set(kinds) <= {
            "commitInfo", "protocol", "metaData", "add"}:
        added = {(a["add"]["path"], a["add"]["size"]) for a in actions if "add" in a}
        if added == {(f.path, f.size) for f in base}:
            return None
        return "the replication base commit adds other files than the signed checkpoint"
    return "a Delta commit no signed version names, and not a replication filler"
