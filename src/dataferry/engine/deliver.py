"""Deliver: bring a consumer's table up to the latest version of a dataset, exactly once.

The sink says which version it has (``_ferry_loads``); the delivery sends what turns that
into the latest: every row (``replace``), the change set by key (``merge``, ``history``),
or the rows added (``append``), with the need's column subset, ``where`` filter and
``mask`` applied. The sink applies it in one transaction with its ``_ferry_loads`` row.

A *reload* (``full``, or a sink whose version the store no longer keeps after ``ferry gc
--force``) sends every row of the latest version and tells the sink to start over,
``_ferry_loads`` included: merge and append targets are emptied first; a history target
keeps its past, its open rows are closed at the new version's time. A delivery records
the versions it reads (``pin``) under ``gc.reading`` so that gc keeps them while it runs.

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
from dataferry.metadata.runs import VersionRef
from dataferry.model.spec import Need
from dataferry.model.types import DataType, parse_type
from dataferry.store.changes import added_rows, change_set, version_rows
from dataferry.store.dataset import DatasetStore, Version
from dataferry.store.gc import reading
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
    warnings: tuple[str, ...] = ()


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
            on_rows: Callable[[int], None] | None = None, *, full: bool = False,
            pin: Callable[[list[VersionRef]], object] | None = None) -> DeliverResult:
    """Deliver the ``index``-th need of consumer ``consumer_ref``.

    ``full`` reloads the sink whatever it has; ``pin`` records the versions the delivery
    is about to read (the runner: on its running run) before it reads them.
    """
    _, _, consumer = context.index.consumers[consumer_ref]
    need: Need = consumer.datasets[index]
    entry = context.index.datasets[need.ref]
    sink = sink_class(consumer.sink.kind)(consumer_ref, consumer.sink, context.root)
    try:
        return deliver_into(sink, consumer_ref, need, context.store.dataset(need.ref),
                            need.table or entry.name, home=context.store.home,
                            on_rows=on_rows, full=full, pin=pin)
    finally:
        sink.close()


def deliver_into(sink: SinkConnector, consumer_ref: str, need: Need, dataset: DatasetStore,
                 table: str, *, home: Path, on_rows: Callable[[int], None] | None = None,
                 full: bool = False,
                 pin: Callable[[list[VersionRef]], object] | None = None) -> DeliverResult:
    """``deliver`` from any store holding ``dataset`` (the hub's, or an agent's verified
    clone of it) into an opened ``sink``; ``home`` holds the ``mask:`` key."""
    previous = sink.applied_version(need.ref, table)
    with reading(dataset):  # gc cannot drop these between resolving and recording them
        latest = dataset.resolve(None)
        old = None if full else _old_version(dataset, previous)
        if pin is not None:
            pin([VersionRef(need.ref, n) for n in sorted({latest.number, *(
                [old.number] if old is not None else [])})])
    if previous == latest.number and not full:
        return DeliverResult(consumer_ref, need.ref, table, latest.number, previous, 0)
    if previous is not None and not full and dataset.same_rows(previous, latest.number):
        # only compactions since (ferry compact): the sink holds these rows already,
        # and the version it has stays the one the next change set starts from
        return DeliverResult(consumer_ref, need.ref, table, previous, previous, 0)
    names = list(need.columns or [c["name"] for c in latest.manifest.schema["columns"]])
    key = list(latest.manifest.schema.get("primary_key") or [])
    mode = need.mode
    gone = previous is not None and old is None and not full and mode != "replace"
    reload = full or gone
    warnings = [_gone_warning(consumer_ref, table, need.ref, mode, previous, latest.number)
                ] if gone and previous is not None else []
    if mode in ("merge", "history") and not all(k in names for k in key):
        raise SinkError(f"{consumer_ref}: {mode} delivery of {need.ref} needs its primary "
                        f"key columns {key} among the delivered columns", public=True)
    if mode in ("history", "append") and old is not None:
        written = 0
        for step in _versions_after(dataset, old, latest):
            written += _send(home, sink, consumer_ref, need, table, dataset, old, step,
                             old.number, names, key, on_rows)
            old = step
            crash_point("catch-up-version-applied")
    else:
        written = _send(home, sink, consumer_ref, need, table, dataset, old, latest,
                        None if reload else previous, names, key, on_rows, reload=reload)
    return DeliverResult(consumer_ref, need.ref, table, latest.number, previous, written,
                         tuple(warnings))


def _gone_warning(consumer: str, table: str, ref: str, mode: str, previous: int,
                  latest: int) -> str:
    """What a delivery says when the version its sink has is gone (``ferry gc --force``)."""
    text = (f"{consumer}: table {table} had version {previous} of {ref}, which the store no "
            f"longer keeps (ferry gc --force); reloaded it in full from version {latest}")
    if mode == "history" and latest - previous > 1:
        lost = (f"version {previous + 1}" if latest - previous == 2
                else f"versions {previous + 1} to {latest - 1}")
        text += (f"; the history lacks the changes of {lost}: those versions never reached "
                 f"it, and rows open at version {previous} were closed at version {latest}")
    return text


def _versions_after(dataset: DatasetStore, old: Version, latest: Version) -> list[Version]:
    """The kept versions after ``old`` up to ``latest``, oldest first: the steps of a history
    or append delivery (a version gc removed is no step: its change comes with the next)."""
    return [dataset.version(n) for n in dataset.version_numbers()
            if old.number < n < latest.number] + [latest]


def _send(home: Path, sink: SinkConnector, consumer_ref: str, need: Need, table: str,
          dataset: DatasetStore, old: Version | None, new: Version, previous: int | None,
          names: list[str], key: list[str], on_rows: Callable[[int], None] | None, *,
          reload: bool = False) -> int:
    """Have the sink turn ``old`` (None: nothing) into ``new`` in one transaction, stamped
    with ``new``'s publication time; rows written. ``reload``: the sink starts over."""
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
    stream = _prepare(rows, types, masked, home, on_rows)
    delivery = Delivery(
        dataset=need.ref, consumer=consumer_ref, table=table, mode=mode, columns=columns,
        primary_key=key, version=new.number, previous=previous,
        created_at=datetime.fromisoformat(new.manifest.created_at.replace("Z", "+00:00")),
        rows=stream, reload=reload,
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
