"""The change-set contract: sources that read a *log of changes* rather than a table.

PostgreSQL and MySQL CDC (``capture: cdc``) and the stream sources (``mqtt``, ``nats``)
read what changed since the position the dataset's head recorded. ``read_changes``
returns a ``ChangeSet``; the engine (``engine.changes``) publishes its upserts and
deleted keys as one keyed version (merge-on-read, with deletes: ``store.publish`` with
``deleted_keys``), records ``position`` as the version's cursor state in the signed
manifest, and only then calls ``acknowledge`` (which confirms the LSN, acks the
messages). Nothing changed: no version, but ``acknowledge`` is still called, so the
server can release its log.

Crash safety comes from the order: a process killed after publishing but before
acknowledging re-reads, on its next run, from the position in the head's manifest (a
source never trusts the server's confirmed position alone) and skips what the head
already has; killed before publishing, nothing was acknowledged and the changes are read
again.

The first run (``request.state`` is None, or ``ferry run --full``) is a consistent
snapshot: ``upserts`` holds the whole table and ``position`` the point in the log it is
consistent with; the engine publishes it as a keyed replace (the keys the head has and
the snapshot lacks are deleted).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from dataferry.connectors.base import ReadRequest
from dataferry.model.spec import SourceDataset

STREAM_KINDS = frozenset({"mqtt", "nats"})
"""Source kinds that only ever read changes (every dataset of theirs uses ``read_changes``)."""


@dataclass(frozen=True)
class DeadLetter:
    """A payload read from the log that does not fit the dataset (streams): kept, counted,
    never published, never silently dropped."""

    payload: bytes
    reason: str
    """Why it does not fit: the column, the value, what to do (never a secret)."""
    origin: dict[str, Any] = field(default_factory=dict)
    """Where it came from, JSON-able: e.g. ``{"topic": ..., "stream_seq": 123}``."""

    def to_json_line(self) -> str:
        """One line of a dead-letter file: the payload as text when it is UTF-8, else base64."""
        line: dict[str, Any] = {"reason": self.reason, "origin": self.origin}
        try:
            line["payload"] = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            line["payload_base64"] = base64.b64encode(self.payload).decode("ascii")
        return json.dumps(line, sort_keys=True, default=str)


def _nothing_to_acknowledge() -> None:
    """The default ``acknowledge``: a source with nothing to confirm."""


@dataclass
class ChangeSet:
    """Changes read from a source's log since the position the head recorded."""

    upserts: pa.RecordBatchReader
    """Full rows in the declared columns; at most one row per primary key: the key's last
    value in this read."""
    deleted_keys: pa.RecordBatchReader | None
    """Primary-key columns only: keys deleted (and not re-inserted later in this read);
    None = no deletes."""
    position: dict[str, Any]
    """JSON-able; recorded as the version's cursor state in the signed manifest (e.g.
    ``{"slot": ..., "lsn": "0/16B3748"}``, ``{"gtid": ...}``, ``{"stream_seq": 123}``)."""
    acknowledge: Callable[[], None] = _nothing_to_acknowledge
    """Called by the engine ONLY after the version is published and signed (or when
    nothing changed): confirms the LSN / acks the messages."""
    warnings: list[str] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    """Payloads that do not fit (streams): kept in a dead-letter file next to the
    version (``engine.changes``), counted in the run's warnings."""
    snapshot: bool | None = None
    """Whether ``upserts`` is the whole table (a keyed replace: stored keys it lacks are
    deleted) rather than changes. None: a snapshot exactly when ``request.state`` was None.
    A source that cannot resume from the state it was given (another capture recorded
    it, the slot is gone) says True and reads the whole table again."""
    close: Callable[[], None] = _nothing_to_acknowledge
    """Called by the engine when it is done with the change set, acknowledged or not
    (releases what the reads held: a replication connection, staging files)."""


@runtime_checkable
class ChangeSource(Protocol):
    """Implemented by ``SourceConnector`` subclasses that read a log of changes."""

    def read_changes(self, request: ReadRequest) -> ChangeSet:
        """The changes since ``request.state`` (the previous version's position; None on
        the first run: a consistent snapshot of the whole table)."""
        ...


@dataclass(frozen=True)
class ChangeProblem:
    """What keeps a dataset from reading changes (``ferry check --connect``)."""

    code: str
    """A finding code: ``missing-primary-key`` (the table has none), ``unreachable`` (the
    server is not set up for it: no logical WAL, no replication rights)."""
    message: str
    severity: str = "warning"


@runtime_checkable
class ChecksChanges(Protocol):
    """A change source that can tell, before a run, whether a dataset's changes can be read."""

    def change_problems(self, dataset: str, spec: SourceDataset) -> list[ChangeProblem]:
        ...


@runtime_checkable
class MeasuresLag(Protocol):
    """A change source that can say how much of its log the store has not read yet."""

    def change_lag_bytes(self, dataset: str) -> int | None:
        """How many bytes of log the source holds for ``dataset`` past what was confirmed
        (None: it holds no position for it)."""
        ...


@runtime_checkable
class ReleasesChanges(Protocol):
    """A change source that holds something on its server for each dataset (a replication
    slot, a durable consumer): ``ferry apply`` releases it once the dataset stops reading
    changes or is removed, so the server does not keep its log for nobody."""

    def release_changes(self, datasets: list[str]) -> list[str]:
        """Drop what the source holds for ``datasets`` (refs); what was dropped, for the
        user (e.g. ``replication slot ferry_shop_orders``). None held: nothing to do."""
        ...


def reads_changes(kind: str, spec: SourceDataset) -> bool:
    """Whether the engine ingests this dataset through ``read_changes``."""
    return spec.capture == "cdc" or kind in STREAM_KINDS
