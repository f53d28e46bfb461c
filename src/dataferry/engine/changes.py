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

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from dataferry.connectors.base import ReadRequest, SourceConnector
from dataferry.connectors.changes import ChangeSet, ChangeSource, DeadLetter
from dataferry.engine.context import RunContext
from dataferry.errors import FerryError, SourceError
from dataferry.faults import crash_point
from dataferry.model.graph import ModelIndex
from dataferry.model.spec import SourceDataset
from dataferry.store.dataset import DatasetStore
from dataferry.store.manifest import write_atomic
from dataferry.store.store import Store

if TYPE_CHECKING:
    from dataferry.store.publish import Published

LAST_READ = "_changes_read.json"
"""A dataset's record of its last acknowledged change read (position, time): lag shows
the seconds since then."""
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
        write_atomic(dataset.path / LAST_READ, json.dumps({
            "position": changes.position, "read_at": datetime.now(UTC).isoformat()},
            sort_keys=True, default=str).encode())
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
                        by_key=True, deleted_keys=deleted,
                        # the log's upserts are changes: stored rows matched by key alone
                        known_changes=mode == "merge")
    return None if published.unchanged else published


def change_lag(index: ModelIndex, store: Store, root: Path, ref: str) -> dict[str, Any] | None:
    """How far dataset ``ref``, which reads changes, is behind its source (None for other
    datasets): ``bytes`` of log the source holds past the last confirmed run, ``seconds``
    since that run read the log (0 when nothing is pending), ``read_at``; ``error`` when
    the source cannot be asked (then ``bytes`` and ``seconds`` are None)."""
    from dataferry.connectors.changes import MeasuresLag, reads_changes
    from dataferry.connectors.registry import source_class

    entry = index.datasets.get(ref)
    if entry is None or entry.source is None or entry.source_name is None or \
            not reads_changes(entry.source.kind, entry.spec):  # type: ignore[arg-type]
        return None
    read_at = _last_read(store.dataset(ref))
    lag: dict[str, Any] = {"bytes": None, "seconds": None, "read_at": read_at}
    try:
        connector = source_class(entry.source.kind)(
            f"{entry.team}.{entry.source_name}", entry.source, root)
        try:
            behind = connector.change_lag_bytes(ref) if isinstance(
                connector, MeasuresLag) else None
        finally:
            connector.close()
    except FerryError as exc:
        lag["error"] = str(exc)
        return lag
    lag["bytes"] = behind
    if behind is not None and read_at is not None:
        since = (datetime.now(UTC) - datetime.fromisoformat(read_at)).total_seconds()
        lag["seconds"] = round(max(since, 0.0), 3) if behind else 0.0
    return lag


def _last_read(dataset: DatasetStore) -> str | None:
    try:
        recorded = json.loads((dataset.path / LAST_READ).read_text())
    except (OSError, ValueError):
        return None
    read_at = recorded.get("read_at") if isinstance(recorded, dict) else None
    return read_at if isinstance(read_at, str) else None


def release_unused(context: RunContext) -> list[str]:
    """``ferry apply``: release what change sources hold for datasets that read changes
    before (their head's position names a slot) and no longer do: removed from the model
    (kept in the store; their team's sources are asked) or with another capture now. Lines for the user: what
    was dropped, or why it could not be (a source that cannot be reached keeps its slot
    until the next apply)."""
    from dataferry.connectors.changes import ReleasesChanges, reads_changes
    from dataferry.connectors.registry import source_class

    index = context.index
    wanted: dict[tuple[str, str], list[str]] = {}  # (team, source) -> datasets to release
    removed = set(context.store.refs()) - set(index.datasets)
    for ref in sorted(removed | set(index.datasets)):
        entry = index.datasets.get(ref)
        if entry is not None and (entry.source is None or reads_changes(
                entry.source.kind, entry.spec)):  # type: ignore[arg-type]
            continue
        if not _read_changes_before(context.store.dataset(ref)):
            continue
        team = ref.partition(".")[0]
        names = [entry.source_name] if entry is not None and entry.source_name else [
            name for name in context.ecosystem.teams[team].sources] \
            if team in context.ecosystem.teams else []
        for name in names:
            wanted.setdefault((team, str(name)), []).append(ref)
    lines = []
    for (team, name), refs in wanted.items():
        spec = context.ecosystem.teams[team].sources[name]
        try:
            connector = source_class(spec.kind)(f"{team}.{name}", spec, context.root)
        except FerryError as exc:
            lines.append(f"source {team}.{name}: {exc}")
            continue
        try:
            if isinstance(connector, ReleasesChanges):
                lines += [f"dropped {what} ({', '.join(refs)} no longer reads changes)"
                          for what in connector.release_changes(refs)]
        except FerryError as exc:
            lines.append(f"source {team}.{name}: could not release the change capture of "
                         f"{', '.join(refs)} ({exc}); the next ferry apply tries again")
        finally:
            connector.close()
    return lines


def _read_changes_before(dataset: DatasetStore) -> bool:
    """Whether ``dataset``'s head recorded a change log's position naming a slot."""
    if not dataset.exists():
        return False
    head = dataset.head()
    return head is not None and isinstance(head.manifest.cursor, dict) and \
        "slot" in head.manifest.cursor


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
