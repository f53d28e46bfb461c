"""Read one CSV, Parquet or JSON Lines file as Arrow batches of the declared columns.

Every reader streams: CSV and JSON Lines in blocks of ``BLOCK_BYTES`` (decompressing
``.gz``, ``.bz2``, ``.zst`` and ``.lz4`` on the way), Parquet one row group's columns at a
time (``pre_buffer=False``), so memory stays bounded by the block or row group size, not
the file size. Batches hold at most ``batch_rows`` rows and only the declared columns the
file has, in the file's types (see ``types.py``); the source aligns them to one schema.

JSON Lines files are parsed by Arrow's JSON reader into ``json_read_type`` types and
handed over in the text transport types. A value that reader does not take (``1.0`` in
an integer column, a number in a text column, any ``json`` or ``map`` column) makes the
rest of the file go through the exact Python path (``dataferry.connectors.http.records``),
continuing after the records already handed over.

A file that cannot be read fails with one line naming the file, the line (or row) and the
problem (``file_errors``): when Arrow's CSV reader refuses a file, or the file ends
inside a quoted value (Arrow would take the rest of the file as that value), the file is
scanned again in Python (``csv_problem``) to find the first line at fault.

``ferry publish`` reads its input through ``read_file`` too, so a file publishes exactly
as the files source reads it (``dataferry.store.files.read_input``).
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from dataferry.connectors.base import SourceColumn
from dataferry.connectors.files.types import json_read_type
from dataferry.connectors.http.records import (
    ShapeError,
    infer_columns,
    json_kind,
    loads,
    records_batch,
    transport_schema,
    transport_type,
)
from dataferry.errors import FerryError, SourceError, TransientError
from dataferry.model.types import DataType

BLOCK_BYTES = 1 << 20
"""Bytes of CSV / JSON Lines text parsed at a time. Arrow reads up to 32 blocks ahead in
the background, so a file being read holds about 40 MiB, whatever its size."""
SAMPLE_LINES = 1000
"""JSON Lines records read per file to report its columns."""

EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet",
              ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")


@dataclass(frozen=True)
class DataFile:
    """A file matched by the glob: ``key`` is its path relative to the glob's fixed part."""

    path: Path
    key: str
    format: str  # csv | parquet | jsonl
    delimiter: str = ","


def data_file(path: Path, key: str, forced: str | None) -> DataFile:
    """The file with its format: ``forced`` (the model's ``format:``) or its extension."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    ext = suffixes[-1] if suffixes else ""
    fmt = forced or EXTENSIONS.get(ext)
    if fmt is None:
        raise SourceError(f"{path}: cannot tell the file format from its extension "
                          f"{ext or '(none)'!r}; name files .csv, .parquet or .jsonl, or set "
                          "format: csv | parquet | jsonl")
    return DataFile(path, key, fmt, "\t" if ext == ".tsv" else ",")


@dataclass
class Wanted:
    """What to read: the dataset (for messages), its declared columns, the batch size."""

    dataset: str
    columns: list[tuple[str, DataType]]
    required: set[str] = field(default_factory=set)  # declared not nullable
    batch_rows: int = 65_536
    null_values: tuple[str, ...] = ()
    """Unquoted CSV texts read as NULL besides the empty field (the model's
    ``null_values:``, ``ferry publish --null-value``); by default none: text stays text."""

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.columns]


@contextmanager
def file_errors(dataset: str, path: Path | str, what: str = "read") -> Iterator[None]:
    """Turn a failure on one file into a ``SourceError`` (or ``TransientError``) naming it."""
    try:
        yield
    except FerryError:
        raise
    except FileNotFoundError:
        raise TransientError(f"{dataset}: {path} disappeared while it was {what}; run again "
                             "(write files elsewhere and rename them into place)") from None
    except (pa.ArrowException, OSError, ValueError, EOFError) as error:
        message = " ".join(str(error).split())
        message = message if len(message) <= 300 else message[:300] + "..."
        raise SourceError(f"{dataset}: cannot read {path}: {message}") from None


def _open(path: Path) -> pa.NativeFile:
    return pa.input_stream(str(path), compression="detect")


def _slices(batch: pa.RecordBatch, rows: int) -> Iterator[pa.RecordBatch]:
    for start in range(0, max(batch.num_rows, 1), rows):
        yield batch.slice(start, rows)


def _require(wanted: Wanted, file: DataFile, names: Sequence[str]) -> list[str]:
    """The declared columns ``file`` has (at least one column, to count rows)."""
    missing = sorted(wanted.required - set(names))
    if missing:
        raise SourceError(f"{wanted.dataset}: {file.path} has no column {missing[0]!r}, which "
                          f"is declared not nullable (found: {', '.join(names[:20])}); add it "
                          "to the file, or declare it nullable")
    present = [n for n in wanted.names if n in names]
    return present or list(names[:1])


# --- types of one file (before reading) --------------------------------------------------


def file_types(file: DataFile, wanted: Wanted) -> dict[str, pa.DataType]:
    """The Arrow type each declared column will have when read from ``file``."""
    if file.format == "parquet":
        schema = pq.read_schema(file.path)
        return {f.name: f.type for f in schema if f.name in wanted.names}
    if file.format == "csv":
        return dict.fromkeys(wanted.names, pa.string())
    return {name: transport_type(t) for name, t in wanted.columns}


def file_columns(file: DataFile, declared: Mapping[str, DataType]) -> list[SourceColumn]:
    """Every column of ``file`` as the source has it (for drift detection)."""
    if file.format == "parquet":
        return [SourceColumn(f.name, str(f.type), f.type, f.nullable)
                for f in pq.read_schema(file.path)]
    if file.format == "csv":
        return [SourceColumn(n, "text", pa.string()) for n in csv_header(file)]
    with _open(file.path) as stream:
        lines = (line for line in _lines(stream) if line.strip())
        records = [r for r in map(_loads_or_none, itertools.islice(lines, SAMPLE_LINES))
                   if isinstance(r, dict)]
    return infer_columns(records, declared)


def _loads_or_none(line: bytes) -> Any:
    """A sampled record, None for a line that is not JSON (reading names it with its line)."""
    try:
        return loads(line)
    except ValueError:
        return None


# --- reading -----------------------------------------------------------------------------


def read_file(file: DataFile, wanted: Wanted) -> Iterator[pa.RecordBatch]:
    """The rows of ``file``: batches of at most ``wanted.batch_rows`` rows."""
    if file.path.stat().st_size == 0:
        return iter(())
    readers = {"csv": _csv, "parquet": _parquet, "jsonl": _jsonl}
    return readers[file.format](file, wanted)


def csv_header(file: DataFile) -> list[str]:
    """The column names in the first record of a CSV file (quoted names may hold newlines)."""
    data = b""
    with _open(file.path) as stream:
        while True:
            chunk = stream.read(1 << 16)
            data += chunk
            text = io.StringIO(data.decode("utf-8-sig", "replace"), newline="")
            rows = list(itertools.islice(csv.reader(text, delimiter=file.delimiter), 2))
            if not chunk or len(rows) > 1 or len(data) > BLOCK_BYTES:
                return rows[0] if rows else []


class _QuoteCounter:
    """A stream that counts the quote characters read through it: a file that ends inside
    a quoted value has an odd count (doubled quotes inside values count two)."""

    def __init__(self, stream: pa.NativeFile) -> None:
        self.stream, self.quotes = stream, 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = bytes(self.stream.read(size if size >= 0 else None))
        self.quotes += data.count(b'"')
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def csv_problem(file: DataFile) -> str | None:
    """The first line of a CSV file that is not well formed, as ``line N: problem; what to
    do``: bytes that are not UTF-8, a quote that is never closed, a wrong field count.
    None when Python's reader finds nothing wrong."""
    header: list[str] | None = None
    record_line = 1

    def decoded(stream: pa.NativeFile) -> Iterator[str]:
        for number, line in enumerate(_lines(stream), 1):
            try:
                text = line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise _Bad(number, f"byte 0x{line[error.start]:02x} at column "
                           f"{error.start + 1} is not UTF-8; save the file as UTF-8 (the "
                           "byte suggests Latin-1 or Windows-1252)") from None
            yield text + "\n"

    try:
        with _open(file.path) as stream:
            reader = csv.reader(decoded(stream), delimiter=file.delimiter, strict=True)
            while True:
                record_line = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return None
                except csv.Error as error:
                    problem = str(error)
                    if "unexpected end of data" in problem or reader.line_num == 0:
                        problem = "a quoted value starts here and is never closed"
                    return (f"line {record_line}: {problem}; close the quote, or double "
                            'quotes inside a quoted value ("")')
                if header is None:
                    header = row
                elif row and row != [""] and len(row) != len(header):
                    return (f"line {record_line}: {len(row)} fields, but the header has "
                            f"{len(header)}; quote values that hold the delimiter "
                            f"{file.delimiter!r}, or fix the line")
    except _Bad as bad:
        return f"line {bad.line}: {bad.problem}"


class _Bad(Exception):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line, self.problem = line, problem


def _csv(file: DataFile, wanted: Wanted) -> Iterator[pa.RecordBatch]:
    try:
        yield from _csv_arrow(file, wanted)
    except pa.ArrowInvalid:
        problem = csv_problem(file)
        if problem is None:
            raise
        raise SourceError(f"{wanted.dataset}: {file.path} {problem}") from None


def _csv_arrow(file: DataFile, wanted: Wanted) -> Iterator[pa.RecordBatch]:
    include = _require(wanted, file, csv_header(file))
    with _open(file.path) as raw:
        stream = _QuoteCounter(raw)
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=file.delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(include, pa.string()), include_columns=include,
                null_values=["", *wanted.null_values], strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        pending = None  # the last batch waits until the quotes are counted to the end
        for batch in reader:
            if pending is not None:
                yield from _slices(pending, wanted.batch_rows)
            pending = batch
        if stream.quotes % 2:
            problem = csv_problem(file)
            if problem is not None:
                raise SourceError(f"{wanted.dataset}: {file.path} {problem}")
        if pending is not None:
            yield from _slices(pending, wanted.batch_rows)


def _parquet(file: DataFile, wanted: Wanted) -> Iterator[pa.RecordBatch]:
    with pq.ParquetFile(file.path, pre_buffer=False) as parquet:
        include = _require(wanted, file, parquet.schema_arrow.names)
        yield from parquet.iter_batches(batch_size=wanted.batch_rows, columns=include)


def _jsonl(file: DataFile, wanted: Wanted) -> Iterator[pa.RecordBatch]:
    schema = transport_schema(wanted.columns)
    types = [json_read_type(t) for _, t in wanted.columns]
    done = 0
    if all(t is not None for t in types):
        explicit = pa.schema([pa.field(n, t) for n, t in zip(wanted.names, types, strict=True)
                              if t is not None])
        try:
            with _open(file.path) as stream:
                reader = pajson.open_json(
                    stream, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES),
                    parse_options=pajson.ParseOptions(
                        explicit_schema=explicit, unexpected_field_behavior="ignore"),
                )
                for batch in reader:
                    as_text = pa.RecordBatch.from_arrays(
                        [batch.column(f.name).cast(f.type) for f in schema], schema=schema)
                    for part in _slices(as_text, wanted.batch_rows):
                        yield part
                        done += part.num_rows
            return
        except pa.ArrowInvalid:
            pass  # the exact Python path takes over after the rows handed over
    yield from _jsonl_python(file, wanted, schema, skip=done)


def _lines(stream: pa.NativeFile) -> Iterator[bytes]:
    rest = b""
    while chunk := stream.read(BLOCK_BYTES):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _jsonl_python(
    file: DataFile, wanted: Wanted, schema: pa.Schema, skip: int
) -> Iterator[pa.RecordBatch]:
    records: list[dict[str, Any]] = []
    numbers: list[int] = []  # line number of each record, for messages

    def batch() -> pa.RecordBatch:
        try:
            return records_batch(records, wanted.columns, schema)
        except ShapeError as error:
            raise SourceError(f"{wanted.dataset}: {file.path} line {numbers[error.row]}: "
                              f"{error}") from None

    with _open(file.path) as stream:
        for number, line in enumerate(_lines(stream), 1):
            if not line.strip():
                continue
            if skip:
                skip -= 1
                continue
            try:
                record = loads(line)
            except ValueError as error:
                raise SourceError(f"{wanted.dataset}: {file.path} line {number}: not valid "
                                  f"JSON ({error})") from None
            if not isinstance(record, dict):
                raise SourceError(f"{wanted.dataset}: {file.path} line {number}: a JSON "
                                  f"{json_kind(record)}, not an object; JSON Lines files hold "
                                  "one object per line")
            records.append(record)
            numbers.append(number)
            if len(records) >= wanted.batch_rows:
                yield batch()
                records, numbers = [], []
    if records:
        yield batch()
