"""Deliver: bring a consumer's table up to the latest version of a dataset, exactly once.

The sink says which version it has (``_ferry_loads``); the delivery sends what turns that
into the latest: every row (``replace``), the change set by key (``merge``, ``history``),
or the rows added (``append``), with the need's column subset, ``where`` filter and
``mask`` applied. The sink applies it in one transaction with its ``_ferry_loads`` row.

A ``history`` or ``append`` sink more than one version behind catches up one version at a
time: each kept version's change set (or added rows), stamped with that version's own
publication time and number, in its own transaction with its own ``_ferry_loads`` row.
Jumping straight to the latest would lose every value that lived only in a version in
between, and date (or tag) the change wrongly. A delivery killed half way leaves the
sink at the last version it committed; the next one goes on from there. ``replace`` and
``merge`` hold only the latest state, so they jump straight to it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataferry.connectors.base import OP_COLUMN, VERSION_COLUMN, Delivery, SinkConnector
from dataferry.connectors.registry import sink_class
from dataferry.engine.context import RunContext
from dataferry.errors import SinkError
from dataferry.faults import crash_point
from dataferry.model.spec import Need
from dataferry.model.types import DataType, parse_type
from dataferry.store.changes import added_rows, change_set, version_rows
from dataferry.store.dataset import DatasetStore, Version
from dataferry.store.storage import decode_batch, store_schema

MASKED_TYPE = "string"


@dataclass(frozen=True)
class DeliverResult:
    consumer: str
    ref: str
    table: str
    version: int
    previous: int | None
    rows: int  # 0 when the sink was already up to date


def mask_key(home: Path) -> bytes:
    """The keyed-hash key for ``mask:`` columns, made once under ``<home>/keys`` (0600)."""
    path = home / "keys" / "mask.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(os.urandom(32))
    return path.read_bytes()


def mask_value(key: bytes, value: Any) -> str | None:
    """One value as a ``mask:`` column delivers it: the keyed hash of its text (None stays
    None). The API shows masked values, e.g. a failed check's examples, with this too."""
    return None if value is None else hmac.new(key, str(value).encode(),
                                               hashlib.sha256).hexdigest()


def _masker(key: bytes) -> Callable[[pa.Array], pa.Array]:
    def mask(array: pa.Array) -> pa.Array:
        return pa.array([mask_value(key, v) for v in array.to_pylist()], pa.string())

    return mask


def _old_version(dataset: DatasetStore, previous: int | None) -> Version | None:
    if previous is None or previous not in dataset.version_numbers():
        return None
    return dataset.version(previous)


def deliver(context: RunContext, consumer_ref: str, index: int,
            on_rows: Callable[[int], None] | None = None) -> DeliverResult:
    """Deliver the ``index``-th need of consumer ``consumer_ref``."""
    _, _, consumer = context.index.consumers[consumer_ref]
    need: Need = consumer.datasets[index]
    entry = context.index.datasets[need.ref]
    dataset = context.store.dataset(need.ref)
    latest = dataset.resolve(None)
    table = need.table or entry.name
    sink = sink_class(consumer.sink.kind)(consumer_ref, consumer.sink, context.root)
    try:
        previous = sink.applied_version(need.ref, table)
        if previous == latest.number:
            return DeliverResult(consumer_ref, need.ref, table, latest.number, previous, 0)
        declared = {c["name"]: c for c in latest.manifest.schema["columns"]}
        names = list(need.columns or declared)
        key = list(latest.manifest.schema.get("primary_key") or [])
        mode = need.mode
        old = _old_version(dataset, previous)
        if previous is not None and old is None and mode in ("merge", "history", "append"):
            # The version the sink has is gone (gc): only a full refresh is exact.
            raise SinkError(
                f"{consumer_ref}: table {table} has version {previous} of {need.ref}, which "
                "the store no longer keeps (gc); drop the table to reload it in full",
                public=True)
        if mode in ("merge", "history") and not all(k in names for k in key):
            raise SinkError(f"{consumer_ref}: {mode} delivery of {need.ref} needs its primary "
                            f"key columns {key} among the delivered columns", public=True)
        if mode in ("history", "append") and old is not None:
            written = 0
            for step in _versions_after(dataset, old, latest):
                written += _send(context, sink, consumer_ref, need, table, dataset, old, step,
                                 old.number, names, key, on_rows)
                old = step
                crash_point("catch-up-version-applied")
        else:
            written = _send(context, sink, consumer_ref, need, table, dataset, old, latest,
                            previous, names, key, on_rows)
        return DeliverResult(consumer_ref, need.ref, table, latest.number, previous, written)
    finally:
        sink.close()


def _versions_after(dataset: DatasetStore, old: Version, latest: Version) -> list[Version]:
    """The kept versions after ``old`` up to ``latest``, oldest first: the steps of a history
    or append delivery (a version gc removed is no step: its change comes with the next)."""
    return [dataset.version(n) for n in dataset.version_numbers()
            if old.number < n < latest.number] + [latest]


def _send(context: RunContext, sink: SinkConnector, consumer_ref: str, need: Need, table: str,
          dataset: DatasetStore, old: Version | None, new: Version, previous: int | None,
          names: list[str], key: list[str], on_rows: Callable[[int], None] | None) -> int:
    """Have the sink turn ``old`` (None: nothing) into ``new`` in one transaction, stamped
    with ``new``'s publication time; rows written."""
    mode = need.mode
    declared = {c["name"]: c for c in new.manifest.schema["columns"]}
    names = [n for n in names if n in declared]  # an older version may lack a newer column
    schema = store_schema([(n, declared[n]["type"], declared[n]["nullable"]) for n in names])
    if mode == "replace":
        rows = version_rows(dataset, new, names, need.where, schema)
    elif mode == "append":
        schema = schema.append(pa.field(VERSION_COLUMN, pa.int64(), False))
        rows = added_rows(dataset, old, new, names, key, need.where, schema)
    else:
        schema = schema.append(pa.field(OP_COLUMN, pa.string(), False))
        rows = change_set(dataset, old, new, names, key, need.where, schema)
    types = {n: declared[n]["type"] for n in names}
    masked = set(need.mask)
    columns: list[tuple[str, DataType, bool]] = [
        (n, parse_type(MASKED_TYPE if n in masked else types[n]), declared[n]["nullable"])
        for n in names
    ]
    stream = _prepare(rows, types, masked, context.store.home, on_rows)
    delivery = Delivery(
        dataset=need.ref, consumer=consumer_ref, table=table, mode=mode, columns=columns,
        primary_key=key, version=new.number, previous=previous,
        created_at=datetime.fromisoformat(new.manifest.created_at.replace("Z", "+00:00")),
        rows=stream,
    )
    return sink.deliver(delivery)


def _prepare(rows: pa.RecordBatchReader, types: dict[str, str], masked: set[str],
             home: Path, on_rows: Callable[[int], None] | None) -> pa.RecordBatchReader:
    """Decode stored values to the declared types and mask what the need masks."""
    mask = _masker(mask_key(home)) if masked else None
    declared = {**types, OP_COLUMN: "string", VERSION_COLUMN: "int64"}
    sample = decode_batch(pa.RecordBatch.from_pylist([], schema=rows.schema), declared)
    fields = [pa.field(f.name, pa.string(), f.nullable) if f.name in masked else f
              for f in sample.schema]
    schema = pa.schema(fields)

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in rows:
            decoded = decode_batch(batch, declared)
            arrays = [mask(column) if mask is not None and name in masked else column
                      for name, column in zip(decoded.schema.names, decoded.columns, strict=True)]
            if on_rows is not None:
                on_rows(batch.num_rows)
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())
