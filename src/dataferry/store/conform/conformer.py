"""The ``Conformer``: a batch in, exactly the declared columns out, or a ``SchemaError``."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dataferry.errors import StoreError
from dataferry.model.spec import Column
from dataferry.model.types import parse_type, to_arrow_field
from dataferry.store.conform.converter import _Converter
from dataferry.store.conform.rejections import (
    _NO_VALUE,
    _first,
    _python,
    _Rejected,
    _show,
    _type_text,
)


class SchemaError(StoreError):
    """Data does not fit a dataset's declared schema (terminal: retrying will not help).

    ``key`` holds the primary-key values of the offending row, ``{"row": index}`` when the
    dataset has no primary key, or ``{}`` when no single row is at fault (a missing column).
    The message names the value and the key; ``public`` says the same without them.
    """

    def __init__(self, dataset: str, column: str, key: dict[str, Any], message: str,
                 public: str | None = None) -> None:
        super().__init__(message, public=message if public is None and not key else public)
        self.dataset, self.column, self.key, self.message = dataset, column, key, message

    def __reduce__(self) -> tuple[type[SchemaError],
                                  tuple[str, str, dict[str, Any], str, str | None]]:
        return type(self), (self.dataset, self.column, self.key, self.message, self.public)


def declared_schema(columns: Mapping[str, Column]) -> pa.Schema:
    """The Arrow schema of the declared columns, in declared order, nullable per the model."""
    return pa.schema(
        [to_arrow_field(name, parse_type(c.type), c.nullable) for name, c in columns.items()]
    )


class Conformer:
    """Conforms the batches of one publication to a dataset's declared columns.

    ``dataset`` names the dataset in messages; ``primary_key`` columns identify an
    offending row in errors; ``on_warning`` receives each warning once (undeclared columns
    and struct fields). ``schema`` is the declared Arrow schema every output batch has.
    """

    def __init__(
        self,
        dataset: str,
        columns: Mapping[str, Column],
        primary_key: Sequence[str] = (),
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.dataset = dataset
        self.columns = dict(columns)
        self.primary_key = tuple(primary_key)
        self.schema = declared_schema(columns)
        self._declared = {name: parse_type(c.type) for name, c in self.columns.items()}
        self._warn = on_warning or (lambda message: None)
        self._warned: set[str] = set()

    def conform(self, batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch:
        """Return the same rows with the declared columns, types and order.

        Errors report rows by index within ``batch`` (``conform_reader`` counts across
        the whole stream).
        """
        return self._conform(batch, 0)

    def conform_reader(
        self, reader: pa.RecordBatchReader | Iterable[pa.RecordBatch]
    ) -> pa.RecordBatchReader:
        """Conform a stream lazily, batch by batch; the input is never held in memory at once.

        A reader's schema is checked at once (missing columns fail here); conversion errors
        are raised while the returned reader is consumed.
        """
        if isinstance(reader, pa.RecordBatchReader):
            self._match_columns(reader.schema)

        def batches() -> Iterator[pa.RecordBatch]:
            row = 0
            for item in reader:
                for batch in item.to_batches() if isinstance(item, pa.Table) else (item,):
                    yield self._conform(batch, row)
                    row += batch.num_rows

        return pa.RecordBatchReader.from_batches(self.schema, batches())

    # --- internals ---------------------------------------------------------------------

    def _match_columns(self, schema: pa.Schema) -> list[int]:
        names = schema.names
        for name in dict.fromkeys(n for n in names if n not in self.columns):
            if name not in self._warned:
                self._warned.add(name)
                self._warn(f"{self.dataset}: column {name!r} is not declared; ignored — "
                           "declare it in the model to keep it")
        indexes = []
        for name in self.columns:
            if names.count(name) > 1:
                raise SchemaError(self.dataset, name, {}, f"{self.dataset}: column {name!r} "
                                  "appears more than once in the input; rename or drop one")
            if name not in names:
                raise SchemaError(self.dataset, name, {}, self._missing(name, names))
            indexes.append(names.index(name))
        return indexes

    def _missing(self, name: str, found: list[str]) -> str:
        close = [n for n in found if n.lower() == name.lower()]
        close = close or difflib.get_close_matches(name, found, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        listed = ", ".join(map(repr, found[:20])) + (", ..." if len(found) > 20 else "")
        return (f"{self.dataset}: declared column {name!r} is missing from the input "
                f"(found: {listed or 'no columns'}); {hint}add it to the data (all nulls if "
                "unknown), or remove it from the model")

    def _conform(self, batch: pa.RecordBatch | pa.Table, first_row: int) -> pa.RecordBatch:
        positions = dict(zip(self.columns, self._match_columns(batch.schema), strict=True))
        # The primary key first, so that an error elsewhere can name its row by key values.
        order = [*(k for k in self.primary_key if k in self.columns), *self.columns]
        arrays: dict[str, pa.Array] = {}
        for name in dict.fromkeys(order):
            index, declared = positions[name], self._declared[name]
            target = self.schema.field(name)
            column = batch.column(index)
            source = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            try:
                array = _Converter(self, name).convert(
                    source, batch.schema.field(index), declared, target
                )
                if not target.nullable and array.null_count:
                    raise _Rejected(_first(pc.is_null(array)), *self._null_problem(name),
                                    _type_text(source.type), declared)
            except _Rejected as rejected:
                raise self._error(name, rejected, arrays, first_row) from None
            arrays[name] = array
        return pa.RecordBatch.from_arrays([arrays[n] for n in self.columns], schema=self.schema)

    def _null_problem(self, name: str) -> tuple[str, str]:
        """What is wrong with a null in ``name``, and what to do."""
        if name in self.primary_key:
            return ("the value is null, but the column is part of the primary key",
                    "every row needs a key: fill it at the source, or change the primary key")
        return ("the value is null, but the column is not nullable",
                "fill it at the source, or declare the column nullable: true")

    def _error(
        self, name: str, rejected: _Rejected, done: dict[str, pa.Array], first_row: int
    ) -> SchemaError:
        where, key = "", {}
        if rejected.index is not None:
            row = first_row + rejected.index
            key = {"row": row}
            where = f" at row {row}"
            if self.primary_key and all(k in done for k in self.primary_key):
                key = {k: _python(done[k], rejected.index) for k in self.primary_key}
                shown = ", ".join(f"{k}={_show(v)}" for k, v in key.items())
                where = f" at row {row} ({shown})"
        value = ""
        if rejected.value is not _NO_VALUE:
            hidden = self.columns[name].pii
            value = "value <hidden: pii column> " if hidden else f"value {_show(rejected.value)} "
        field = f" (field {name}{rejected.path})" if rejected.path else ""
        problem = (f"{rejected.problem} (source type {rejected.source}, declared "
                   f"{rejected.declared}); {rejected.hint}")
        message = f"{self.dataset}: column {name!r}{field}{where}: {value}{problem}"
        # The problems are written by this module from types, never from the value.
        at = f" at row {first_row + rejected.index}" if rejected.index is not None else ""
        subject = "" if rejected.problem.startswith("the ") else "a value "
        public = f"{self.dataset}: column {name!r}{field}{at}: {subject}{problem}"
        return SchemaError(self.dataset, name, key, message, public)


