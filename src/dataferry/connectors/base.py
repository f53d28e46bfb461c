"""The contract of source and sink connectors.

A **source** reads a producer's system into Arrow record batches, streamed with bounded
memory. It does not convert to the declared types: ``dataferry.store.conform`` does that
for every source alike (and names the dataset, column and row of anything that does not
fit). A source maps its native types to the nearest Arrow types (``types.py`` of its
package) and reports its live columns, so schema drift is found before anything is
published (``dataferry.connectors.drift``).

A **sink** writes a dataset version into a consumer's system. The runner prepares the
rows (column subset, ``where``, ``mask``, the change set since the version the sink
already has); the sink creates or evolves the target table with the nearest native
types and applies the rows **in one transaction together with the row of ``_ferry_loads``
that records the applied version**, so a delivery re-run after a crash, or twice, never
duplicates or half-applies a version.

Errors: raise ``SourceError``/``SinkError`` (terminal: bad credentials, missing table,
type mismatch) or ``TransientError`` (connection refused, timeout, lock conflict: the
runner retries with backoff). Messages name the dataset/table/column and never contain a
secret (use ``dataferry.secrets.redact``).

**Lineage names:** each connector says, from the model alone (no connection, no secret),
how OpenLineage names what it reads or writes (``lineage_inputs``, ``lineage_output``):
``postgres://host:port`` + ``database.schema.table`` and so on (docs/events.md#openlineage),
so lineage runs from a source through the store to a sink.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from dataferry.errors import SinkError
from dataferry.model.spec import AnySink, AnySource, SourceDataset
from dataferry.model.types import DataType

MODES = ("replace", "merge", "append", "history")
"""The delivery modes of MODEL.md."""

LOADS_TABLE = "_ferry_loads"
"""The table every sink keeps, in the target schema/database, recording applied versions:
columns ``dataset`` (text), ``table_name`` (text), ``version`` (bigint), ``mode`` (text),
``rows`` (bigint), ``loaded_at`` (timestamp, UTC); one row per (dataset, table_name)."""

OP_COLUMN = "_ferry_op"
"""In a change set: ``upsert`` or ``delete`` per row (merge and history deliveries)."""
VERSION_COLUMN = "_ferry_version"
"""In append deliveries: the dataset version a row was added in (kept in the target)."""
VALID_FROM, VALID_TO = "valid_from", "valid_to"
"""History (SCD2) deliveries: the target keeps these two timestamp_tz columns."""


@dataclass(frozen=True)
class LineageName:
    """A table or file as OpenLineage names it: ``namespace`` the system it lives in (a
    server, a database file), ``name`` where in it. Never holds a user or a password."""

    namespace: str
    name: str


@dataclass(frozen=True)
class SourceColumn:
    """A column as the source system has it."""

    name: str
    native_type: str  # e.g. "numeric(12,2)", "timestamp with time zone", "TEXT"
    arrow_type: pa.DataType  # what ``read`` will produce for it
    nullable: bool = True


@dataclass
class ReadRequest:
    """What to read of one source dataset."""

    dataset: str  # "<team>.<dataset>"
    spec: SourceDataset
    columns: list[str]  # the declared columns (a source may return more; they are dropped)
    state: dict[str, Any] | None = None
    """What the previous published version recorded (``ReadResult.state``); None = all."""
    since: Any = None
    """Incremental with a cursor: read rows with ``cursor >= since`` (the runner already
    subtracted the lag); None = everything."""
    batch_rows: int = 65_536
    lag_seconds: float | None = None
    """Incremental with a cursor: the lag already taken off ``since`` (a source that cannot
    see late commits warns about transactions open longer than this)."""


@dataclass
class ReadResult:
    """A stream of batches, and the state to record once the version is published."""

    reader: pa.RecordBatchReader
    state: Callable[[], dict[str, Any] | None] = field(default=lambda: None)
    """Called after the reader is exhausted: e.g. the files seen by a files source."""
    warnings: list[str] = field(default_factory=list)
    """What the run should say about this read (e.g. a transaction open past the lag)."""
    unique_key: bool = False
    """The source guarantees that no two rows read share the declared primary key (e.g. a
    whole table read in one snapshot, with a unique constraint on those columns): a
    replace version then skips the store's own uniqueness check (``enforce_unique``)."""


class SourceConnector(ABC):
    """Reads datasets of one ``sources:`` entry of the model."""

    kind: ClassVar[str]

    def __init__(self, name: str, spec: AnySource, model_root: Path) -> None:
        self.name = name  # "<team>.<source>"
        self.spec = spec
        self.model_root = model_root

    @abstractmethod
    def columns(self, dataset: str, spec: SourceDataset) -> list[SourceColumn]:
        """The live columns of a dataset's table/query/files (for drift and --connect)."""

    @abstractmethod
    def read(self, request: ReadRequest) -> ReadResult:
        """Stream the dataset's rows (bounded memory)."""

    @classmethod
    def lineage_inputs(cls, spec: AnySource, dataset: str, dataset_spec: SourceDataset,
                       model_root: Path) -> list[LineageName]:
        """The tables or files ``dataset`` reads, as OpenLineage names them (a query's
        tables); empty when unknown. From the model alone: no connection, no secret."""
        return []

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


@dataclass
class Delivery:
    """One dataset version to apply to one target table."""

    dataset: str  # "<team>.<dataset>"
    consumer: str  # "<team>.<consumer>"
    table: str  # target table name (the need's table:, default the dataset name)
    mode: str  # replace | merge | append | history
    columns: list[tuple[str, DataType, bool]]  # declared (name, type, nullable) delivered
    primary_key: list[str]
    version: int
    previous: int | None  # the version the sink had (``applied_version``), None = none
    created_at: datetime  # the version's publication time (history valid_from)
    rows: pa.RecordBatchReader
    """replace: every row of the version; merge and history: the change set since
    ``previous`` with ``_ferry_op``; append: the rows added since ``previous`` with
    ``_ferry_version``. Values are in the declared types' natural Arrow form."""
    reload: bool = False
    """Start the target over from this version, whatever it has (``ferry run --full``, or
    its version is gone from the store): ``rows`` holds every row (``previous`` is None);
    merge, append and replace targets are emptied first, a history target keeps its past
    rows and closes its open ones at ``created_at``. ``_ferry_loads`` is overwritten."""


def check_versions(applied: int | None, delivery: Delivery, where: str) -> bool:
    """Whether to apply ``delivery`` to a target that has ``applied`` (False: already has it).

    A change set (merge, append, history) must start from the version the target has;
    a reload applies whatever the target has.
    """
    if delivery.reload:
        return True
    if applied is not None and applied == delivery.version:
        return False
    if delivery.mode != "replace" and applied != delivery.previous:
        raise SinkError(
            f"{where} has version {applied} of {delivery.dataset}, but the {delivery.mode} "
            f"delivery of version {delivery.version} is a change set from version "
            f"{delivery.previous}; deliver again from the version the table has", public=True)
    return True


class SinkConnector(ABC):
    """Writes deliveries into the target of one consumer's ``sink:``."""

    kind: ClassVar[str]

    def __init__(self, consumer: str, spec: AnySink, model_root: Path) -> None:
        self.consumer = consumer
        self.spec = spec
        self.model_root = model_root

    def check(self, delivery: Delivery) -> None:
        """Refuse a delivery no sink can apply: an unknown mode, or merge/history without a key."""
        if delivery.mode not in MODES:
            raise SinkError(f"sink {self.consumer}: unknown mode {delivery.mode!r}")
        if delivery.mode in ("merge", "history") and not delivery.primary_key:
            raise SinkError(f"sink {self.consumer}: {delivery.mode} delivery of "
                            f"{delivery.dataset} needs a primary key")

    @abstractmethod
    def applied_version(self, dataset: str, table: str) -> int | None:
        """The version of ``dataset`` last applied to ``table`` (from ``_ferry_loads``)."""

    @abstractmethod
    def deliver(self, delivery: Delivery) -> int:
        """Apply the delivery in one transaction with its ``_ferry_loads`` row; rows written."""

    @classmethod
    def lineage_output(cls, spec: AnySink, table: str, model_root: Path) -> LineageName | None:
        """The target ``table`` as OpenLineage names it (None: unknown). From the model
        alone: no connection, no secret."""
        return None

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""
