"""Discover files matched by a glob (CSV, Parquet, JSON Lines): their columns as
``FilesSource`` reads them, as one dataset.

Parquet files carry their types (and a file written by dataferry names each column's
declared type in its field metadata: that type is taken). JSON Lines types come from the first records, as the
files source samples them. CSV files hold text: discover reads the first block of each
file and proposes int64, float64, bool, date or timestamp where every sampled value is
one (a column with a leading zero, such as ``0012``, stays string: a number would lose
it); the ingest converts the text and names the row of a later value that does not fit.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dataferry.connectors.base import SourceColumn
from dataferry.connectors.files.formats import DataFile, file_errors
from dataferry.connectors.files.source import FilesSource
from dataferry.connectors.files.types import common_type
from dataferry.discover import typemap
from dataferry.discover.live import LiveColumn, LiveTable, probe
from dataferry.model.spec import FilesSource as FilesSpec
from dataferry.model.types import (
    METADATA_KEY,
    DataType,
    Primitive,
    UnsupportedArrowTypeError,
    from_arrow_field,
)

_SAMPLE_BYTES = 1 << 20
_CSV_TYPES = {pa.int64(): "int64", pa.float64(): "float64", pa.bool_(): "bool",
              pa.date32(): "date"}


def tables(spec: FilesSpec, name: str) -> list[LiveTable]:
    """The files as one dataset named ``name``."""
    source = FilesSource("discover", spec, Path("."))
    dataset = probe()
    live = source.columns(name, dataset)
    files = source._files(name, dataset)
    csv = [f for f in files if f.format == "csv"]
    guessed = _csv_guesses(name, csv) if csv and len(csv) == len(files) else {}
    tagged = _tagged(name, files)
    columns = [_column(c, guessed.get(c.name), tagged.get(c.name)) for c in live]
    return [LiveTable(name, None, columns)]


def _tagged(dataset: str, files: list[DataFile]) -> dict[str, DataType]:
    """Parquet columns whose field metadata names their dataferry type (files written by
    ``ferry export`` or a parquet sink), when every file agrees."""
    found: dict[str, set[DataType]] = {}
    for file in files:
        if file.format != "parquet":
            return {}
        with file_errors(dataset, file.path):
            for field in pq.read_schema(file.path):
                if field.metadata and METADATA_KEY.encode() in field.metadata:
                    try:
                        found.setdefault(field.name, set()).add(from_arrow_field(field))
                    except UnsupportedArrowTypeError:
                        continue
    return {name: next(iter(ts)) for name, ts in found.items() if len(ts) == 1}


def _column(column: SourceColumn, guess: str | None, tagged: DataType | None) -> LiveColumn:
    if tagged is not None:
        return typemap.declared(column, tagged)
    if guess is not None:
        return typemap.declared(column, Primitive(guess))
    kinds = {kind.strip() for kind in column.native_type.split("|")}
    if "number" in kinds and kinds <= {"number", "integer", "null"}:  # JSON: 1 and 0.5
        return typemap.declared(column, Primitive("float64"))
    if pa.types.is_null(column.arrow_type):
        return typemap.as_text(column, "empty in every sampled row: read as text")
    return typemap.from_arrow(column)


def _csv_guesses(dataset: str, files: list[DataFile]) -> dict[str, str]:
    """Column -> the type every sampled value of every file has (absent: string)."""
    found: dict[str, list[pa.DataType]] = {}
    for file in files:
        with file_errors(dataset, file.path):
            for name, t in _csv_sample(file).items():
                found.setdefault(name, []).append(t)
    guesses = {}
    for name, types in found.items():
        common = common_type(types)
        if common is None or len(set(types)) > 1:
            continue
        if pa.types.is_timestamp(common):
            guesses[name] = "timestamp_tz" if common.tz else "timestamp"
        elif common in _CSV_TYPES:
            guesses[name] = _CSV_TYPES[common]
    return guesses


def _csv_sample(file: DataFile) -> dict[str, pa.DataType]:
    """The types Arrow infers from the first block of ``file`` (text where a value has
    a leading zero or is quoted empty text)."""
    read = pacsv.ReadOptions(block_size=_SAMPLE_BYTES)
    parse = pacsv.ParseOptions(delimiter=file.delimiter)
    typed = pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True,
                                 quoted_strings_can_be_null=False)
    with pa.input_stream(str(file.path), compression="detect") as stream:
        reader = pacsv.open_csv(stream, read, parse, typed)
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return {}
    inferred = {f.name: f.type for f in batch.schema}
    numbers = [n for n, t in inferred.items() if pa.types.is_integer(t)]
    if numbers:
        text = pacsv.ConvertOptions(column_types=dict.fromkeys(numbers, pa.string()),
                                    include_columns=numbers)
        with pa.input_stream(str(file.path), compression="detect") as stream:
            raw = pacsv.open_csv(stream, read, parse, text).read_next_batch()
        for name in numbers:
            if pc.any(pc.match_substring_regex(raw.column(name), r"^[-+]?0\d")).as_py():
                inferred[name] = pa.string()
    return inferred
