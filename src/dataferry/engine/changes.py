"""Ingest of a change log (``capture: cdc``, stream sources): see ``connectors.changes``.

One run reads a ``ChangeSet`` from the position the head recorded, publishes its upserts
and deleted keys as one keyed version (a merge with deletes; without a primary key, an
append), records the set's position as the version's cursor state in the signed
manifest, and only then acknowledges the set, so the source's server releases its log.
A snapshot (the first run, ``--full``) is published as a keyed replace. Nothing changed:
no version, and the set is acknowledged all the same. Payloads that did not fit (dead
letters) are written next to the version in ``_dead_letters/`` and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from dataferry.connectors.base import ReadRequest, SourceConnector
from dataferry.connectors.changes import ChangeSet, ChangeSource, DeadLetter
from dataferry.engine.context import RunContext
from dataferry.errors import SourceError
from dataferry.faults import crash_point
from dataferry.model.spec import SourceDataset
from dataferry.store.dataset import DatasetStore
from dataferry.store.manifest import write_atomic

if TYPE_CHECKING:
    from dataferry.store.publish import Published

DEAD_LETTERS = "_dead_letters"
"""The directory of a dataset holding its dead-letter files (``<version>-<time>.jsonl``)."""


def publish_changes(context: RunContext, ref: str, connector: SourceConnector,
                    spec: SourceDataset, *, full: bool, warnings: list[str],
                    on_rows: Callable[[int], None] | None) -> tuple[int, Published | None]:
    """Read ``ref``'s changes and publish them (see the module docstring): the rows read
    (upserts and deleted keys) and the version made (None: nothing changed)."""
    if not isinstance(connector, ChangeSource):
        raise SourceError(f"{ref}: a {connector.kind} source cannot read a change log; "
                          "use capture: snapshot or incremental")
    dataset = context.store.dataset(ref)
    head = None if not dataset.exists() else dataset.head()
    state = None if full or head is None else head.manifest.cursor
    changes = connector.read_changes(ReadRequest(
        dataset=ref, spec=spec, columns=list(spec.columns), state=state))
    try:
        warnings.extend(changes.warnings)
        snapshot = state is None if changes.snapshot is None else changes.snapshot
        counted = _Counted(on_rows)
        upserts = counted.stream(changes.upserts)
        deleted = counted.stream(changes.deleted_keys) if changes.deleted_keys else None
        if snapshot:
            if deleted is not None and _any_rows(deleted):
                raise SourceError(f"{ref}: a snapshot read of the source returned deleted "
                                  "keys; a snapshot holds the whole table")
            deleted, mode = None, "replace"
        elif spec.primary_key:
            mode = "merge"
        else:
            if deleted is not None and _any_rows(deleted):
                raise SourceError(f"{ref}: the change log deletes rows, which needs a "
                                  "primary key; declare primary_key")
            deleted, mode = None, "append"
        published = _publish(context, dataset, spec, upserts, deleted, mode, changes.position,
                             warnings)
        crash_point("cdc-before-acknowledge")
        if changes.dead_letters:
            version = published.version if published is not None else (
                head.number if head is not None else 0)
            warnings.append(_keep_dead_letters(dataset, version, changes.dead_letters))
        changes.acknowledge()
        return counted.rows, published
    finally:
        changes.close()


def _publish(context: RunContext, dataset: DatasetStore, spec: SourceDataset,
             upserts: pa.RecordBatchReader, deleted: pa.RecordBatchReader | None, mode: str,
             position: dict[str, Any], warnings: list[str]) -> Published | None:
    from dataferry.store.publish import publish  # loads deltalake, DuckDB: not at start

    published = publish(dataset, spec, upserts, keys=context.store.keys,
                        mode=mode,  # type: ignore[arg-type]
                        cursor=dict(position), on_warning=warnings.append,
                        max_delete_ratio=context.max_delete_ratio(spec),
                        unique_key=mode == "replace" and bool(spec.primary_key),
                        by_key=True, deleted_keys=deleted)
    return None if published.unchanged else published


def _keep_dead_letters(dataset: DatasetStore, version: int, letters: list[DeadLetter]) -> str:
    """Write ``letters`` to a new dead-letter file of ``dataset``; the run's warning."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = dataset.path / DEAD_LETTERS / f"{version:08d}-{stamp}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "".join(letter.to_json_line() + "\n" for letter in letters).encode())
    return (f"{dataset.ref}: {len(letters)} message(s) did not fit the dataset and were kept "
            f"in {_relative(path, dataset.path)} (first: {letters[0].reason})")


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root.parent.parent).as_posix()


def _any_rows(reader: pa.RecordBatchReader) -> bool:
    return any(batch.num_rows for batch in reader)


class _Counted:
    """Counts the rows of the readers it passes through (progress and the run's count)."""

    def __init__(self, on_rows: Callable[[int], None] | None) -> None:
        self.on_rows = on_rows
        self.rows = 0

    def stream(self, reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
        def batches() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                self.rows += batch.num_rows
                if self.on_rows is not None:
                    self.on_rows(batch.num_rows)
                yield batch

        return pa.RecordBatchReader.from_batches(reader.schema, batches())


__all__ = ["ChangeSet", "publish_changes"]
