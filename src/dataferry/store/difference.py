"""When a replace is published as its keyed difference from the head (docs/store.md).

A snapshot ingest (and ``ferry run --full``) of a dataset with a primary key reads the
whole table, but its version holds only what changed: the rows new or different, and
deletes of the keys gone, stored merge-on-read (``merge.merge_files(complete=True)``).
A plain replace stays where that cannot be, or would not pay.
"""

from __future__ import annotations

from typing import Any

from dataferry.model.spec import DatasetCommon
from dataferry.model.types import DataType, ListType, MapType, StructType, parse_type
from dataferry.store.batching import WIDE_ROW_BYTES, row_width
from dataferry.store.dataset import DatasetStore, Version


def difference_by_key(spec: DatasetCommon, head: Version | None,
                      declared: dict[str, Any]) -> bool:
    """Whether a replace of ``spec`` (whose manifest schema block is ``declared``) can be
    published as its keyed difference from ``head``.

    It needs a primary key, a head, an unpartitioned table, and the head's declared
    columns, types and key: after a schema change every row reads differently anyway,
    and a plain replace writes it at less cost. A dataset with a map column stays a
    replace: DuckDB, which compares the rows, refuses a map with a repeated key, and the
    store keeps such maps. So does one whose head's rows are wide (``wide_rows``, asked
    once the head verifies).
    """
    return (bool(spec.primary_key) and head is not None and not spec.partition_by
            and not any(_holds_map(parse_type(c.type)) for c in spec.columns.values())
            and head.manifest.schema.get("columns") == declared["columns"]
            and list(head.manifest.schema.get("primary_key") or []) == list(spec.primary_key))


def wide_rows(dataset: DatasetStore, head: Version) -> bool:
    """Whether ``head``'s rows are too wide to compare by key (``batching.WIDE_ROW_BYTES``):
    DuckDB would hold the joined rows' long strings in memory it cannot spill. It reads the
    files' footers, so ask once the head has verified."""
    return row_width(dataset.path, dataset.active_files(head.number)) >= WIDE_ROW_BYTES


def _holds_map(declared: DataType) -> bool:
    if isinstance(declared, MapType):
        return True
    if isinstance(declared, ListType):
        return _holds_map(declared.item)
    if isinstance(declared, StructType):
        return any(_holds_map(t) for _, t in declared.fields)
    return False
