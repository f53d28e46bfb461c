"""Ingest: read a producer dataset from its source and publish it as a new signed version.

``snapshot`` capture reads the whole table and publishes it as a ``replace``: with a
primary key, as its keyed difference from the last version (the rows new or changed, and
deletes of the keys gone: ``publish(by_key=True)``), so an unchanged snapshot publishes
nothing; ``--full`` re-reads an incremental dataset the same way. ``incremental`` reads the
rows whose cursor is at least the last published cursor minus the lag (default 5 min), so
rows committed late with an old cursor value are not missed, and merges them by primary
key (append without one); the new cursor is recorded in the version's manifest, so it
moves only when the version is published. A run that finds nothing new publishes nothing.
``cdc`` capture and stream sources read a log of changes instead (``engine.changes``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.connectors.base import ReadRequest, SourceConnector
from dataferry.connectors.changes import reads_changes
from dataferry.connectors.drift import check_drift
from dataferry.connectors.registry import source_class
from dataferry.engine.changes import publish_changes
from dataferry.engine.context import RunContext
from dataferry.model.spec import duration_seconds
from dataferry.startup_trace import first_source_read

if TYPE_CHECKING:
    from dataferry.store.publish import Published


@dataclass(frozen=True)
class IngestResult:
    ref: str
    rows_read: int
    published: Published | None  # None: nothing new
    warnings: list[str]


class _CursorTracker:
    """Passes batches through and remembers the largest cursor value seen."""

    def __init__(self, reader: pa.RecordBatchReader, column: str | None,
                 on_rows: Callable[[int], None] | None) -> None:
        self.reader, self.column, self.on_rows = reader, column, on_rows
        self.maximum: Any = None
        self.rows = 0

    def stream(self) -> pa.RecordBatchReader:
        def batches() -> Iterator[pa.RecordBatch]:
            for batch in self.reader:
                self.rows += batch.num_rows
                if self.on_rows is not None:
                    self.on_rows(batch.num_rows)
                if self.column is not None and self.column in batch.schema.names and batch.num_rows:
                    top = pc.max(batch.column(self.column)).as_py()
                    if top is not None and (self.maximum is None or _later(top, self.maximum)):
                        self.maximum = top
                yield batch

        return pa.RecordBatchReader.from_batches(self.reader.schema, batches())


def _later(a: Any, b: Any) -> bool:
    try:
        return bool(a > b)
    except TypeError:  # e.g. naive vs aware datetimes from two batches: compare as text
        return str(a) > str(b)


def _to_state(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _since(state: dict[str, Any] | None, lag: str) -> Any:
    """The cursor to read from: the last one minus the lag (for times), else the last one.

    The value goes back to the source in the form it came from: a datetime when the source
    gave datetimes, ISO text (same format) when it keeps times as text (e.g. SQLite).
    """
    if not state or state.get("value") is None:
        return None
    value = state["value"]
    kind = state.get("kind")
    if isinstance(value, str) and kind in ("datetime", "text"):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        earlier = moment - timedelta(seconds=duration_seconds(lag))
        if kind == "text":
            return earlier.isoformat(sep="T" if "T" in value else " ")
        return earlier
    return value


def read_request(context: RunContext, ref: str, *, full: bool = False) -> ReadRequest:
    """What an ingest of ``ref`` asks its source now: everything, or (incremental) the rows
    after the cursor its head recorded. An agent is asked the same (``dataferry.agent.dispatch``)."""
    spec = context.index.datasets[ref].dataset
    dataset = context.store.dataset(ref)
    head = None if full or not dataset.exists() else dataset.head()
    previous = head.manifest.cursor if head is not None else None
    incremental = spec.capture == "incremental" and not full
    lag = spec.lag or context.ecosystem.defaults.lag
    return ReadRequest(
        dataset=ref, spec=spec, columns=list(spec.columns),
        state=previous if incremental else None,
        since=_since(previous, lag) if incremental and spec.cursor else None,
        lag_seconds=duration_seconds(lag) if incremental and spec.cursor else None,
    )


def ingest(context: RunContext, ref: str, *, full: bool = False,
           on_rows: Callable[[int], None] | None = None,
           connector: SourceConnector | None = None) -> IngestResult:
    """Read ``ref`` from its source and publish it (see the module docstring).

    ``connector`` replaces the source's own: a job of a private network reads the files
    its agent uploaded (``dataferry.agent.dispatch``)."""
    entry = context.index.datasets[ref]
    spec = entry.dataset
    assert entry.source is not None and entry.source_name is not None
    if connector is None:
        connector = source_class(entry.source.kind)(
            f"{entry.team}.{entry.source_name}", entry.source, context.root)
    assert connector is not None
    dataset = context.store.dataset(ref)
    try:
        first_source_read()
        warnings = check_drift(ref, spec, connector.columns(ref, spec))
        if reads_changes(entry.source.kind, spec):
            rows, changed = publish_changes(context, ref, connector, spec, full=full,
                                            warnings=warnings, on_rows=on_rows)
            return IngestResult(ref, rows, changed, warnings)
        head = None if full or not dataset.exists() else dataset.head()
        previous = head.manifest.cursor if head is not None else None
        incremental = spec.capture == "incremental" and not full
        request = read_request(context, ref, full=full)
        result = connector.read(request)
        warnings.extend(result.warnings)
        tracker = _CursorTracker(result.reader, spec.cursor, on_rows)
        stream = tracker.stream()
        if incremental and head is not None:
            mode = "merge" if spec.primary_key else "append"
        else:
            mode = "replace"
        first = next(iter(stream), None) if incremental and head is not None else None
        if incremental and head is not None and first is None:
            return IngestResult(ref, 0, None, warnings)  # nothing new: no version
        if first is not None:
            stream = _prepend(first, stream)
        def cursor() -> dict[str, Any] | None:
            """Evaluated when the data is written, so the signed manifest records it."""
            state = dict(result.state() or {})
            if spec.cursor:
                value = tracker.maximum
                if value is None:  # nothing read: the cursor stays where it was
                    state.update({k: v for k, v in (previous or {}).items()
                                  if k in ("column", "value", "kind")})
                else:
                    kind = ("datetime" if isinstance(value, datetime) else
                            "text" if isinstance(value, str) else "number")
                    state.update({"column": spec.cursor, "value": _to_state(value),
                                  "kind": kind})
            return state or None

        # Here, after the first read: the writer loads deltalake, DuckDB (key checks),
        # pyarrow.parquet and the signing keys, which the start of a run does not need.
        from dataferry.store.publish import publish

        published = publish(dataset, spec, stream, keys=context.store.keys,
                            mode=mode,  # type: ignore[arg-type]
                            cursor=cursor, on_warning=warnings.append,
                            # the source moves the cursor whenever a row changes
                            changed_by=spec.cursor if incremental else None,
                            max_delete_ratio=context.max_delete_ratio(spec),
                            unique_key=result.unique_key,
                            # a snapshot (or --full) of a keyed dataset: only what changed
                            by_key=True)
        return IngestResult(ref, tracker.rows, None if published.unchanged else published,
                            warnings)
    finally:
        connector.close()


def _prepend(first: pa.RecordBatch, rest: pa.RecordBatchReader) -> pa.RecordBatchReader:
    def batches() -> Iterator[pa.RecordBatch]:
        yield first
        yield from rest

    return pa.RecordBatchReader.from_batches(rest.schema, batches())
