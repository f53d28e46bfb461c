"""The files source: CSV, Parquet and JSON Lines files matched by a glob.

Model keys: the source's ``path`` (a glob, relative to the model directory unless
absolute; ``**`` matches folders recursively; hidden files are skipped) and ``format``
(``csv | parquet | jsonl``; by default each file's extension: ``.csv``/``.tsv``,
``.parquet``/``.pq``, ``.jsonl``/``.ndjson``, optionally compressed ``.gz``, ``.bz2``,
``.zst``, ``.lz4``). A dataset may override both with its own ``path:`` and ``format:``.

Every matching file is read, in path order, as one stream of batches with the declared
columns in declared order; columns are matched by name, so files may order them
differently, and extra columns are not read. A declared column a file lacks is null for
that file's rows (files gain columns over time) unless it is declared not nullable, which
is an error naming the file. Files that disagree on a column's type are read in one type
that holds both exactly (``types.common_type``), text if need be.

Capture:

- ``snapshot``: every matching file; no file matching is an error naming the glob.
- ``incremental``: only the files that are new or changed since the version last
  published. ``ReadResult.state()`` records ``{"files": {"<path relative to the glob's
  folder>": [size, "<blake3 hex>"]}}`` for every file matched now (deleted files drop
  out); a file is read when its path is new or its size or hash differs. Files are hashed
  *before* they are read, so one that changes while being read is read again next time.
  Every matching file is hashed on every run (BLAKE3, memory-mapped, all cores): a
  changed file of the same size is still found. A changed file is read whole (the store's
  merge by primary key removes the rows it already had); rows of deleted files are not
  deleted. The cursor (``since``) is not used: files carry no ordering the source trusts.
  Nothing new (or nothing matching) is an empty stream.

Write files atomically (write elsewhere, then rename into the folder): a file still being
written may be read half-written, then again when it is complete.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import pyarrow as pa

from dataferry.connectors.base import (
    LineageName,
    ReadRequest,
    ReadResult,
    SourceColumn,
    SourceConnector,
)
from dataferry.connectors.files.formats import (
    DataFile,
    Wanted,
    data_file,
    file_columns,
    file_errors,
    file_types,
    read_file,
)
from dataferry.connectors.files.types import common_type
from dataferry.connectors.http.records import transport_type
from dataferry.connectors.naming import local_path
from dataferry.errors import SourceError
from dataferry.model.spec import FilesSource as FilesSpec
from dataferry.model.spec import SourceDataset
from dataferry.model.types import parse_type

__all__ = ["FilesSource", "fingerprint", "null_values"]

_MAGIC = re.compile(r"[*?[]")


def fingerprint(path: Path) -> list[Any]:
    """``[size, blake3 hex digest]`` of a file's bytes, as the incremental state keeps it."""
    size = path.stat().st_size
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(path)
    return [size, hasher.hexdigest()]


def null_values(source: Any, dataset: Any) -> list[str]:
    """The texts read as NULL in CSV: the dataset's ``null_values:`` if it has them, else
    the files source's (none when either is not a files source)."""
    own = getattr(dataset, "null_values", None)
    if own is not None:
        return list(own)
    return list(source.null_values) if isinstance(source, FilesSpec) else []


class FilesSource(SourceConnector):
    """Reads datasets from CSV, Parquet and JSON Lines files (module docstring)."""

    kind = "files"
    spec: FilesSpec

    @classmethod
    def lineage_inputs(cls, spec: Any, dataset: str, dataset_spec: SourceDataset,
                       model_root: Path) -> list[LineageName]:
        return [LineageName("file", local_path(dataset_spec.path or spec.path, model_root))]

    def columns(self, dataset: str, spec: SourceDataset) -> list[SourceColumn]:
        """The union of the columns of every matching file: Parquet's own types, text for
        CSV, and for JSON Lines what the first records hold. No file matching is an error."""
        files = self._files(dataset, spec)
        if not files:
            raise SourceError(self._no_files(dataset, spec), public=True)
        declared = {name: parse_type(column.type) for name, column in spec.columns.items()}
        found: dict[str, list[SourceColumn]] = {}
        for file in files:
            with file_errors(dataset, file.path):
                for column in file_columns(file, declared):
                    found.setdefault(column.name, []).append(column)
        return [
            SourceColumn(
                name,
                " | ".join(dict.fromkeys(c.native_type for c in columns)),
                common_type(c.arrow_type for c in columns) or pa.string(),
                nullable=len(columns) < len(files) or any(c.nullable for c in columns),
            )
            for name, columns in found.items()
        ]

    def read(self, request: ReadRequest) -> ReadResult:
        """Stream the rows of every matching file (``incremental``: new or changed ones)."""
        spec, dataset = request.spec, request.dataset
        if spec.capture == "cdc":
            raise SourceError(f"{dataset}: a files source cannot capture cdc; use snapshot "
                              "or incremental (new or changed files)")
        wanted = Wanted(
            dataset,
            [(name, parse_type(spec.columns[name].type)) for name in request.columns],
            {name for name in request.columns if not spec.columns[name].nullable},
            request.batch_rows,
            tuple(null_values(self.spec, spec)),
        )
        files = self._files(dataset, spec)
        incremental = spec.capture == "incremental"
        if not files and not incremental:
            raise SourceError(self._no_files(dataset, spec), public=True)
        seen: dict[str, list[Any]] = {}
        if incremental:
            before = (request.state or {}).get("files") or {}
            for file in files:
                with file_errors(dataset, file.path, "hashed"):
                    seen[file.key] = fingerprint(file.path)
            files = [f for f in files if list(before.get(f.key) or ()) != seen[f.key]]
        schema = self._schema(wanted, files)

        def batches() -> Iterator[pa.RecordBatch]:
            for file in files:
                with file_errors(dataset, file.path):
                    if not incremental:
                        seen[file.key] = fingerprint(file.path)
                    for batch in read_file(file, wanted):
                        yield _align(batch, schema)

        state: Callable[[], dict[str, Any] | None] = lambda: {"files": dict(seen)}  # noqa: E731
        return ReadResult(pa.RecordBatchReader.from_batches(schema, batches()), state)

    # --- internals -------------------------------------------------------------------

    def _glob(self, spec: SourceDataset) -> tuple[str, str]:
        """The glob as the model has it, and as an absolute pattern."""
        text = spec.path or self.spec.path
        path = Path(text).expanduser()
        return text, str(path if path.is_absolute() else self.model_root / path)

    def _files(self, dataset: str, spec: SourceDataset) -> list[DataFile]:
        _, pattern = self._glob(spec)
        parts = Path(pattern).parts
        fixed = next((i for i, part in enumerate(parts) if _MAGIC.search(part)), len(parts) - 1)
        base = Path(*parts[:fixed])
        forced = spec.format or self.spec.format
        files = []
        for name in sorted(glob.glob(pattern, recursive=True)):
            path = Path(name)
            if path.is_file():
                with file_errors(dataset, path):
                    files.append(data_file(path, path.relative_to(base).as_posix(), forced))
        return files

    def _no_files(self, dataset: str, spec: SourceDataset) -> str:
        text, pattern = self._glob(spec)
        where = "" if text == pattern else f" (looked for {pattern})"
        return (f"{dataset}: no file matches {text!r}{where}; check the path: glob of the "
                "source or dataset")

    def _schema(self, wanted: Wanted, files: list[DataFile]) -> pa.Schema:
        """One schema for every file: per column, a type that holds each file's values."""
        types: dict[str, list[tuple[pa.DataType, DataFile]]] = {}
        for file in files:
            with file_errors(wanted.dataset, file.path):
                for name, t in file_types(file, wanted).items():
                    types.setdefault(name, []).append((t, file))
        fields = []
        for name, declared in wanted.columns:
            found = types.get(name)
            common = common_type(t for t, _ in found) if found else transport_type(declared)
            if common is None:
                assert found is not None
                (first, a), (second, b) = next(
                    (x, y) for x in found for y in found if x[0] != y[0])
                raise SourceError(f"{wanted.dataset}: column {name!r} is {first} in {a.path} "
                                  f"but {second} in {b.path}; make the files agree",
                                  public=True)
            fields.append(pa.field(name, common))
        return pa.schema(fields)


def _align(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with exactly ``schema``'s columns: missing ones null, others cast exactly."""
    arrays = []
    for target in schema:
        index = batch.schema.get_field_index(target.name)
        if index < 0:
            arrays.append(pa.nulls(batch.num_rows, target.type))
            continue
        column = batch.column(index)
        if column.type != target.type:
            column = column.cast(target.type)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
