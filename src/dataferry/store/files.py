"""Reading and writing .parquet / .csv / .jsonl files as streams of Arrow record batches."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from dataferry.errors import UsageError
from dataferry.store.python_rows import python_rows

FORMATS = (".parquet", ".csv", ".jsonl")
BLOCK_SIZE = 16 << 20


def file_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".ndjson":
        return ".jsonl"
    if suffix not in FORMATS:
        raise UsageError(f"{path}: unknown file type {suffix or '(none)'}; use .parquet, .csv "
                         "or .jsonl")
    return suffix


def read_batches(path: Path) -> pa.RecordBatchReader:
    """Stream a file's rows (CSV columns arrive as strings: the declared types decide)."""
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    kind = file_format(path)
    if kind == ".parquet":
        # No pre-buffering: it reads whole row groups ahead and triples peak memory.
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=8 << 20)
        return pa.RecordBatchReader.from_batches(
            parquet.schema_arrow, parquet.iter_batches(batch_size=65_536)
        )
    if kind == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
        return pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
            ),
        )
    return pajson.open_json(path, read_options=pajson.ReadOptions(block_size=BLOCK_SIZE))


def json_value(value: Any) -> Any:
    """A value as JSON shows it: decimals, timestamps, dates, bytes as strings."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, tuple):  # map entries come as (key, value) pairs
        return [json_value(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def write_batches(
    batches: Iterable[pa.RecordBatch], schema: pa.Schema, path: Path,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Write batches to ``path`` in the format its suffix names; returns the row count."""
    kind = file_format(path)
    rows = 0
    temp = path.with_name(f".{path.name}.tmp")
    try:
        if kind == ".parquet":
            with pq.ParquetWriter(temp, schema, compression="zstd") as writer:
                for batch in batches:
                    writer.write_batch(batch)
                    rows += batch.num_rows
                    if on_rows:
                        on_rows(batch.num_rows)
        elif kind == ".csv":
            with pacsv.CSVWriter(temp, _csv_schema(schema)) as writer:
                for batch in batches:
                    writer.write_batch(_csv_batch(batch))
                    rows += batch.num_rows
                    if on_rows:
                        on_rows(batch.num_rows)
        else:
            with temp.open("w", encoding="utf-8") as handle:
                for batch in batches:
                    for row in python_rows(batch):
                        handle.write(json.dumps({k: json_value(v) for k, v in row.items()},
                                                ensure_ascii=False) + "\n")
                    rows += batch.num_rows
                    if on_rows:
                        on_rows(batch.num_rows)
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return rows


def _nested(t: pa.DataType) -> bool:
    return bool(pa.types.is_nested(t) or pa.types.is_binary(t)
                or pa.types.is_fixed_size_binary(t))


def _csv_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, pa.string()) if _nested(f.type) else f for f in schema])


def _csv_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """CSV has no nested values: lists, maps, structs and bytes become JSON text."""
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if _nested(field.type):
            values = [None if v is None else json.dumps(json_value(v), ensure_ascii=False)
                      for v in column.to_pylist()]
            columns.append(pa.array(values, pa.string()))
        else:
            columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=_csv_schema(batch.schema))
