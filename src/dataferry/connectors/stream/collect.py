"""Messages in, one ``ChangeSet`` out: what every stream source does with what it read.

Each message's payload is parsed as JSON (numbers exact, ``http.records.loads``), each
declared column takes the value its ``fields:`` path names (default: the payload member
named as the column; ``$topic`` / ``$topic[N]`` the topic or one of its levels), and the
rows are conformed to the declared types by the store's ``Conformer``, so a stream
converts values exactly as every other source does.

A payload that does not fit (not JSON, not an object where members are read, a value of
the wrong type or shape, a missing key or required value) becomes a ``DeadLetter`` with
the reason; it never stops the run. The change set holds at most one row per primary key:
the key's last message in the order the source added them.

Memory is bounded by the run's batch (``batch: rows``): the rows are kept as conformed
Arrow batches until the run ends, since the last value of a key can come last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.connectors.changes import ChangeSet, DeadLetter
from dataferry.connectors.http.records import (
    ShapeError,
    json_kind,
    loads,
    records_batch,
    transport_schema,
)
from dataferry.model.spec import SourceDataset
from dataferry.model.streamnames import FieldPath, parse_field_path
from dataferry.model.types import parse_type
from dataferry.store.conform import Conformer, SchemaError

__all__ = ["ChangeCollector", "Message"]

_CHUNK = 1024
"""Messages conformed together (one at a time only when a chunk holds a bad one)."""


@dataclass(frozen=True)
class Message:
    """One message as a stream source received it."""

    payload: bytes
    topic: str
    """The MQTT topic or NATS subject it arrived on."""
    origin: dict[str, Any] = field(default_factory=dict)
    """Where it came from, JSON-able, for dead letters (``{"topic": .., "stream_seq": ..}``)."""


class _Unfit(Exception):
    """A payload that does not fit; the message is the dead letter's reason."""


class ChangeCollector:
    """Collects one run's messages of ``dataset`` and builds its ``ChangeSet``.

    ``separator`` splits a topic into levels (``/`` for MQTT, ``.`` for NATS).
    """

    def __init__(self, dataset: str, spec: SourceDataset, columns: Sequence[str],
                 separator: str) -> None:
        self.dataset, self.spec, self.separator = dataset, spec, separator
        self.columns = list(columns)
        self.paths: dict[str, FieldPath] = {
            name: parse_field_path(spec.fields.get(name, f"payload.{name}"))
            for name in self.columns}
        self._types = [(name, parse_type(spec.columns[name].type)) for name in self.columns]
        self._transport = transport_schema(self._types)
        self.conformer = Conformer(dataset, {n: spec.columns[n] for n in self.columns},
                                   [k for k in spec.primary_key if k in self.columns])
        self.dead_letters: list[DeadLetter] = []
        self.messages = 0
        self._pending: list[tuple[dict[str, Any], Message]] = []
        self._batches: list[pa.RecordBatch] = []

    # --- reading ---------------------------------------------------------------------

    def add(self, message: Message) -> None:
        """Take one message (in the order the stream had them)."""
        self.messages += 1
        try:
            record = self._record(message)
        except _Unfit as unfit:
            self.dead_letters.append(DeadLetter(message.payload, str(unfit), message.origin))
            return
        self._pending.append((record, message))
        if len(self._pending) >= _CHUNK:
            self._flush()

    def _record(self, message: Message) -> dict[str, Any]:
        needs_payload = any(not path.topic for path in self.paths.values())
        payload: Any = None
        if needs_payload:
            try:
                payload = loads(message.payload)
            except UnicodeDecodeError:
                raise _Unfit(f"{self.dataset}: the payload is not UTF-8 text, so not JSON; "
                             "publish JSON objects") from None
            except ValueError as exc:
                raise _Unfit(f"{self.dataset}: the payload is not JSON ({exc}); publish "
                             "JSON objects") from None
        record: dict[str, Any] = {}
        for name, path in self.paths.items():
            record[name] = self._value(name, path, payload, message.topic)
        return record

    def _value(self, name: str, path: FieldPath, payload: Any, topic: str) -> Any:
        if path.topic:
            if path.level is None:
                return topic
            levels = topic.split(self.separator)
            try:
                return levels[path.level]
            except IndexError:
                return None
        value = payload
        walked = "payload"
        for member in path.members:
            if value is None:
                return None
            if not isinstance(value, dict):
                raise _Unfit(f"{self.dataset}: column {name!r} reads {walked}.{member}, but "
                             f"{walked} is {_article(json_kind(value))}, not an object")
            value = value.get(member)
            walked += f".{member}"
        return value

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        try:
            self._batches.append(self._conform([record for record, _ in pending]))
            return
        except (ShapeError, SchemaError):
            pass  # one at a time: find the messages that do not fit
        for record, message in pending:
            try:
                self._batches.append(self._conform([record]))
            except ShapeError as exc:
                self.dead_letters.append(DeadLetter(
                    message.payload, f"{self.dataset}: {exc}", message.origin))
            except SchemaError as exc:
                reason = str(exc).replace(" at row 0", "")
                self.dead_letters.append(DeadLetter(message.payload, reason, message.origin))

    def _conform(self, records: list[dict[str, Any]]) -> pa.RecordBatch:
        return self.conformer.conform(records_batch(records, self._types, self._transport))

    # --- the result ------------------------------------------------------------------

    @property
    def rows(self) -> int:
        """Messages that fit so far."""
        return int(sum(b.num_rows for b in self._batches)) + len(self._pending)

    def change_set(self, position: dict[str, Any], acknowledge: Callable[[], None],
                   close: Callable[[], None]) -> ChangeSet:
        """The run's changes: the last row per primary key, no deletes, never a snapshot."""
        self._flush()
        table = pa.Table.from_batches(self._batches, schema=self.conformer.schema)
        table = _last_per_key(table, [k for k in self.spec.primary_key if k in self.columns])
        warnings = []
        if self.dead_letters:
            warnings.append(f"{self.dataset}: {len(self.dead_letters)} of {self.messages} "
                            "messages do not fit the dataset; they are kept in the version's "
                            "dead-letter file with the reasons")
        return ChangeSet(
            upserts=pa.RecordBatchReader.from_batches(table.schema, _batches(table)),
            deleted_keys=None, position=position, acknowledge=acknowledge,
            warnings=warnings, dead_letters=list(self.dead_letters),
            snapshot=False,  # a stream's first read is changes too: nothing stored is deleted
            close=close)


def _last_per_key(table: pa.Table, key: list[str]) -> pa.Table:
    """The table with one row per key, its last, in the order those last rows came."""
    if not key or table.num_rows == 0:
        return table
    order = "__ferry_arrival"
    numbered = table.select(key).append_column(order, pa.array(range(table.num_rows),
                                                                pa.int64()))
    last = numbered.group_by(key, use_threads=False).aggregate([(order, "max")])
    keep = pc.sort_indices(last.column(f"{order}_max"))
    return table.take(pc.take(last.column(f"{order}_max"), keep))


def _batches(table: pa.Table) -> Iterator[pa.RecordBatch]:
    yield from table.to_batches(max_chunksize=65_536)


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
