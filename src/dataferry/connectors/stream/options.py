"""Model settings every stream source reads the same way."""

from __future__ import annotations

from dataferry.connectors.base import SourceColumn
from dataferry.connectors.http.records import transport_type
from dataferry.model.spec import SourceDataset, StreamBatch
from dataferry.model.streamnames import parse_field_path
from dataferry.model.types import parse_type

__all__ = ["batch_of", "declared_columns"]


def batch_of(spec: SourceDataset) -> StreamBatch:
    """The dataset's ``batch:``, or the defaults."""
    return spec.batch if spec.batch is not None else StreamBatch()


def declared_columns(spec: SourceDataset) -> list[SourceColumn]:
    """What a stream "has": the declared columns as a read hands them over (payloads carry
    no schema; a payload that does not fit is a dead letter, not drift)."""
    found = []
    for name, column in spec.columns.items():
        path = spec.fields.get(name, f"payload.{name}")
        native = "topic" if parse_field_path(path).topic else f"json {path}"
        found.append(SourceColumn(name, native, transport_type(parse_type(column.type))))
    return found
