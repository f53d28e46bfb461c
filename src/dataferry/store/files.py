"""Reading and writing .parquet / .csv / .jsonl files as streams of Arrow record batches.

``ferry publish`` reads its file with the files source's reader (``read_input``), so
values arrive exactly as a files source would read them: CSV values stay text, an
unquoted empty field is NULL, and only the texts of ``null_values`` are read as NULL too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dataferry.connectors.files.formats import (
    COMPRESSIONS,
    EXTENSIONS,
    DataFile,
    Wanted,
    csv_header,
    data_file,
    file_columns,
    file_errors,
    file_types,
    read_file,
)
from dataferry.connectors.http.records import transport_schema
from dataferry.errors import SourceError, UsageError
from dataferry.model.spec import Column
from dataferry.model.types import parse_type
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


def read_input(
    path: Path, dataset: str, columns: dict[str, Column], null_values: Sequence[str] = (),
    on_warning: Callable[[str], None] | None = None,
) -> pa.RecordBatchReader:
    """Stream the declared columns of a file to publish, read as the files source reads it.

    Undeclared columns are not read (one warning each); a declared column the file lacks
    is left out, for the conformer to report. Failures name the file, line and problem.
    """
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    if not suffixes or suffixes[-1] not in EXTENSIONS:
        raise UsageError(f"{path}: unknown file type {''.join(path.suffixes) or '(none)'}; use "
                         ".parquet, .csv, .tsv or .jsonl (.csv and .jsonl may be compressed: "
                         ".gz, .bz2, .zst, .lz4)")
    file = data_file(path, path.name, None)
    if path.stat().st_size == 0:
        raise SourceError(f"{dataset}: {path} is empty (0 bytes): nothing to publish; check "
                          "the export that wrote it (a CSV needs at least its header line)")
    wanted = Wanted(dataset, [(name, parse_type(c.type)) for name, c in columns.items()],
                    null_values=tuple(null_values))
    with file_errors(dataset, path):
        schema = _input_schema(file, wanted)
        if on_warning is not None:
            found = [c.name for c in file_columns(file, {n: t for n, t in wanted.columns})]
            for name in found:
                if name not in columns:
                    on_warning(f"{dataset}: column {name!r} is not declared; ignored — "
                               "declare it in the model to keep it")

    def batches() -> Iterator[pa.RecordBatch]:
        with file_errors(dataset, path):
            for batch in read_file(file, wanted):
                yield pa.RecordBatch.from_arrays(
                    [batch.column(f.name).cast(f.type) for f in schema], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _input_schema(file: DataFile, wanted: Wanted) -> pa.Schema:
    """The columns ``read_file`` hands over for ``file``: the declared ones it has."""
    if file.format == "jsonl":
        return transport_schema(wanted.columns)
    types = file_types(file, wanted)
    present = csv_header(file) if file.format == "csv" else list(types)
    return pa.schema([pa.field(n, types[n]) for n in wanted.names if n in present])


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
                for batch in batches:  # a row group each: the writer would buffer 1M rows
                    writer.write_table(pa.Table.from_batches([batch]))
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
