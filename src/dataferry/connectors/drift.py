"""Schema drift: compare a source's live columns with the declared ones before ingesting.

A new source column is ignored with a warning until it is declared; a missing declared
column or an incompatible type fails the ingest with a message saying what changed.
``ferry check --connect`` reports the same as ``schema-mismatch``.
"""

from __future__ import annotations

import pyarrow as pa

from dataferry.connectors.base import SourceColumn
from dataferry.errors import SourceError
from dataferry.model.spec import SourceDataset
from dataferry.model.types import (
    Decimal,
    ListType,
    MapType,
    Primitive,
    String,
    StructType,
    family,
    parse_type,
)

# What each declared type family accepts from a source, by Arrow type predicate; text is
# accepted for everything (conform parses it, and names the row if it cannot).
_NUMERIC = ("integer", "float", "decimal")


def _compatible(declared: str, arrow: pa.DataType) -> bool:
    t = parse_type(declared)
    if pa.types.is_null(arrow) or pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return True
    if pa.types.is_dictionary(arrow):
        return _compatible(declared, arrow.value_type)
    kind = family(t)
    if kind in _NUMERIC or isinstance(t, Decimal):
        return bool(pa.types.is_integer(arrow) or pa.types.is_floating(arrow)
                    or pa.types.is_decimal(arrow) or pa.types.is_boolean(arrow))
    if isinstance(t, String) or (isinstance(t, Primitive) and t.name in ("string", "json")):
        return True  # anything can be written as text/JSON
    if isinstance(t, Primitive):
        checks = {
            "bool": lambda a: pa.types.is_boolean(a) or pa.types.is_integer(a),
            "binary": lambda a: pa.types.is_binary(a) or pa.types.is_large_binary(a)
            or pa.types.is_fixed_size_binary(a),
            "uuid": lambda a: pa.types.is_binary(a) or pa.types.is_fixed_size_binary(a),
            "date": lambda a: pa.types.is_date(a) or pa.types.is_timestamp(a),
            "time": lambda a: pa.types.is_time(a),
            "timestamp": lambda a: pa.types.is_timestamp(a) or pa.types.is_date(a),
            "timestamp_tz": lambda a: pa.types.is_timestamp(a) or pa.types.is_date(a),
            "interval": lambda a: pa.types.is_interval(a) or pa.types.is_duration(a),
        }
        check = checks.get(t.name)
        return check(arrow) if check is not None else True
    if isinstance(t, ListType):
        return bool(pa.types.is_list(arrow) or pa.types.is_large_list(arrow)
                    or pa.types.is_fixed_size_list(arrow))
    if isinstance(t, MapType):
        return bool(pa.types.is_map(arrow) or pa.types.is_list(arrow))
    if isinstance(t, StructType):
        return bool(pa.types.is_struct(arrow))
    return True


def compare(ref: str, spec: SourceDataset,
            live: list[SourceColumn]) -> tuple[list[str], list[str]]:
    """(problems, warnings): missing or incompatible columns, and new source columns."""
    found = {c.name: c for c in live}
    folded = {c.name.lower(): c for c in live}
    problems, warnings = [], []
    for name, column in spec.columns.items():
        source = found.get(name) or folded.get(name.lower())
        if source is None:
            problems.append(f"declared column {name!r} is missing at the source")
        elif not _compatible(column.type, source.arrow_type):
            problems.append(f"column {name!r} is {source.native_type} at the source, which "
                            f"cannot hold the declared {column.type}")
    declared = {n.lower() for n in spec.columns}
    for live_column in live:
        if live_column.name.lower() not in declared:
            warnings.append(f"{ref}: the source has a new column {live_column.name!r} "
                            f"({live_column.native_type}); it is ignored until declared in "
                            "the model")
    return problems, warnings


def check_drift(ref: str, spec: SourceDataset, live: list[SourceColumn]) -> list[str]:
    """Warnings for new source columns; raises ``SourceError`` for missing/incompatible ones."""
    problems, warnings = compare(ref, spec, live)
    if problems:
        raise SourceError(f"{ref}: the source's schema changed: " + "; ".join(problems)
                          + "; update the model or the source, then run again", public=True)
    return warnings
