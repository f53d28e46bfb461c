"""``ferry check`` binds every SQL transformer's query against its inputs' declared schemas.

No data is read: DuckDB binds the query over empty tables shaped as the transform would
register them (``engine.bind``). What it finds, each pointing into the SQL (the YAML
file's line:column under ``sql:``, or the ``sql_file``'s own):

- ``parse-error``: the SQL does not parse (DuckDB's parser message and position);
- ``unknown-reference``: a table that is not one of the transformer's inputs (add it to
  ``inputs:``), a column no input has (the closest name, or the inputs' columns), an
  unknown table alias;
- ``sql-error``: anything else DuckDB refuses when binding (an unknown function, a wrong
  argument type, reading files, a last statement that is not a query);
- ``schema-mismatch``: a declared column the query does not yield (error, at the
  column's declaration); a column it yields that is not declared (warning: dropped at
  run time, as an ingest drops undeclared columns); a declared type that cannot hold
  the query's type (error), or holds only part of it (warning: a narrowing such as
  BIGINT into ``int32`` or DECIMAL(38,2) into ``decimal(18,2)``, checked value by value
  at run time; cast in the SQL to say it is meant).

Python transformers are not bound, and a transformer whose inputs or ``sql_file`` are
missing is skipped (those are reported elsewhere, or are no error in a static check).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import pyarrow as pa

from dataferry.model.findings import Path, Report, Severity, close_match, suggest
from dataferry.model.graph import DatasetEntry, ModelIndex
from dataferry.model.load import LoadedModel
from dataferry.model.policy import masked_input_columns
from dataferry.model.reads import transformer_sql, view_names
from dataferry.model.spec import Transformer
from dataferry.model.sqlplace import SqlPlace, sql_file_place, yaml_place
from dataferry.model.types import (
    DataType,
    Decimal,
    ListType,
    MapType,
    Primitive,
    StructType,
    TypeParseError,
    describe_change,
    family,
    format_type,
    is_widening,
    parse_type,
)

if TYPE_CHECKING:  # duckdb is imported when there is SQL to bind
    from dataferry.engine.bind import BindFailure, OutputColumn


def check_transformer_sql(loaded: LoadedModel, index: ModelIndex,
                          refs: Collection[str] | None = None) -> None:
    """Bind every SQL transformer of ``index`` (only those of ``refs`` when given); add
    what fails to ``loaded.report``."""
    from dataferry.engine.bind import QueryBinder

    checker = _Checker(loaded, index)
    binder: QueryBinder | None = None
    entries = index.datasets.values() if refs is None else [
        index.datasets[ref] for ref in refs if ref in index.datasets]
    try:
        for entry in entries:
            if isinstance(entry.spec, Transformer) and entry.spec.python is None:
                inputs = checker.inputs(entry)
                sql = transformer_sql(entry.spec, loaded.root / "teams" / entry.team)
                if inputs is None or sql is None:
                    continue
                binder = binder or QueryBinder()
                checker.check(entry, sql, binder.bind(sql, inputs))
    finally:
        if binder is not None:
            binder.close()


class _Checker:
    def __init__(self, loaded: LoadedModel, index: ModelIndex) -> None:
        self.loaded = loaded
        self.index = index
        self.report: Report = loaded.report
        self.schemas: dict[tuple[tuple[tuple[str, str, bool], ...], frozenset[str]],
                           pa.Schema | None] = {}
        self.texts: dict[str, str | None] = {}

    def inputs(self, entry: DatasetEntry) -> dict[str, pa.Schema] | None:
        """View name -> schema of each input; None when one is unknown or has bad types."""
        from dataferry.engine.bind import input_schema

        assert isinstance(entry.spec, Transformer)
        refs = list(entry.spec.inputs)
        if any(ref not in self.index.datasets for ref in refs):
            return None
        out: dict[str, pa.Schema] = {}
        for ref, view in view_names(refs).items():
            masked = frozenset(masked_input_columns(self.index, entry.ref, ref))
            columns = self.index.datasets[ref].spec.columns
            # The schema follows from the columns' names, types and nullability: inputs
            # laid out alike (a table per region, a copy per stage) share one.
            key = (tuple((name, c.type, c.nullable) for name, c in columns.items()), masked)
            if key not in self.schemas:
                try:
                    self.schemas[key] = input_schema(columns, set(masked))
                except (TypeParseError, ValueError, pa.ArrowException):
                    self.schemas[key] = None  # an unknown-type finding says why
            schema = self.schemas[key]
            if schema is None:
                return None
            out[view] = schema
        return out

    def check(self, entry: DatasetEntry, sql: str,
              bound: list[OutputColumn] | BindFailure) -> None:
        # Where the SQL is in the files is worked out for a finding only: most queries
        # have none, and it reads the YAML file again.
        place = functools.partial(self.place, entry, sql)
        if isinstance(bound, list):
            self.output(entry, sql, place, bound)
        else:
            self.failure(entry, sql, place, bound)

    # --- where -----------------------------------------------------------------------

    def place(self, entry: DatasetEntry, sql: str) -> SqlPlace:
        spec = entry.spec
        assert isinstance(spec, Transformer)
        if spec.sql_file is not None:
            return sql_file_place(f"teams/{entry.team}/{spec.sql_file}", sql)
        file, line, column = self.report.locator.locate((*entry.path, "sql"))
        text = self.text(file) if file.endswith((".yaml", ".yml")) else None
        if text is None:  # a Python DSL file: its position, the SQL's own in the message
            return SqlPlace(file, ((0, line, column),))
        return yaml_place(file, text, line, column, sql)

    def text(self, file: str) -> str | None:
        if file not in self.texts:
            try:
                self.texts[file] = (self.loaded.root / file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                self.texts[file] = None
        return self.texts[file]

    def add(self, code: str, message: str, where: Callable[[], SqlPlace], sql: str,
            offset: int | None, severity: Severity = "error") -> None:
        place = where()
        line, column = place.position(offset)
        if len(place.segments) == 1 and not place.file.endswith((".yaml", ".yml", ".sql")) \
                and offset is not None:
            message += f" (at line {_sql_line(sql, offset)} of the SQL)"
        self.report.add_at(code, message, place.file, (line, column), severity)

    # --- what -------------------------------------------------------------------------

    def failure(self, entry: DatasetEntry, sql: str, place: Callable[[], SqlPlace],
                failure: BindFailure) -> None:
        spec = entry.spec
        assert isinstance(spec, Transformer)
        what = f"transformer {entry.ref}"
        views = view_names(list(spec.inputs))
        offset = failure.offset if failure.offset is not None else (
            _find_name(sql, failure.name) if failure.name else None)
        if failure.kind == "syntax":
            self.add("parse-error", f"{what}: the SQL does not parse: {failure.message}",
                     place, sql, offset)
        elif failure.kind == "table":
            self.add("unknown-reference", f"{what}: {self.unknown_table(failure.name or '', views)}",
                     place, sql, offset)
        elif failure.kind == "column":
            self.add("unknown-reference", f"{what}: {self.unknown_column(failure.name or '', views)}",
                     place, sql, offset)
        elif failure.kind == "alias":
            self.add("unknown-reference", f"{what}: unknown table or alias {failure.name!r} "
                     f"in the SQL{suggest(failure.name or '', views.values())}", place, sql, offset)
        else:
            self.add("sql-error", f"{what}: the SQL does not bind: {failure.message}",
                     place, sql, offset)

    def unknown_table(self, name: str, views: dict[str, str]) -> str:
        tables = ", ".join(f"{view} = {ref}" for ref, view in views.items())
        message = f"table {name!r} is not among the transformer's inputs (its inputs: {tables})"
        close = difflib.get_close_matches(name, list(views.values()), n=1, cutoff=0.6)
        if close:
            return message + f"; did you mean {close[0]!r}?"
        datasets = sorted(ref for ref, e in self.index.datasets.items()
                          if e.name.lower() == name.lower())
        if datasets:
            return message + f"; add {' or '.join(datasets)} to inputs:"
        return message + "; add it to inputs:"

    def unknown_column(self, name: str, views: dict[str, str]) -> str:
        columns = {view: list(self.index.datasets[ref].spec.columns)
                   for ref, view in views.items()}
        every = [c for names in columns.values() for c in names]
        close = close_match(name, every)
        if close is not None:
            return f"unknown column {name!r}; did you mean {close!r}?"
        listed = "; ".join(f"{view}: {', '.join(names)}" for view, names in columns.items())
        return f"unknown column {name!r}: none of the inputs has it ({listed})"

    def output(self, entry: DatasetEntry, sql: str, place: Callable[[], SqlPlace],
               columns: list[OutputColumn]) -> None:
        what = f"transformer {entry.ref}"
        names = [c.name for c in columns]
        yields = ", ".join(names)
        declared = entry.spec.columns
        for name in declared:
            if names.count(name) > 1:
                self.add("schema-mismatch", f"{what}: the query yields column {name!r} "
                         "more than once; give each a distinct name (select ... as name)",
                         place, sql, _find_name(sql, name))
            elif name not in names:
                self.missing(entry, name, names, yields)
        for column in columns:
            if column.name not in declared:
                self.add("schema-mismatch", f"{what}: the query yields column "
                         f"{column.name!r}, which is not declared; it is dropped when the "
                         "transformer runs (declare it in columns: to keep it, or leave it "
                         "out of the query)", place, sql, _find_name(sql, column.name),
                         severity="warning")
            elif names.count(column.name) == 1:
                self.types(entry, column)

    def missing(self, entry: DatasetEntry, name: str, names: list[str], yields: str) -> None:
        close = [n for n in names if n.lower() == name.lower()]
        close = close or difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        self.report.add(
            "schema-mismatch",
            f"transformer {entry.ref}: declared column {name!r} is not in the query's "
            f"result (it yields {yields or 'no columns'}).{hint} Add it to the query "
            "(null::TYPE as name if unknown), or remove it from columns:",
            (*entry.path, "columns", name), key=True)

    def types(self, entry: DatasetEntry, column: OutputColumn) -> None:
        from dataferry.connectors.duckdb.types import native_type

        try:
            declared = parse_type(entry.spec.columns[column.name].type)
        except TypeParseError:
            return  # an unknown-type finding says why
        at: Path = (*entry.path, "columns", column.name, "type")
        what = f"transformer {entry.ref} column {column.name!r}"
        found = column.type
        if not column.supported:
            self.report.add("schema-mismatch", f"{what}: the query yields {column.duckdb_type}, "
                            f"which no dataferry type holds; cast it in the SQL (CAST(... AS "
                            f"{native_type(declared)}))", at)
            return
        if found is None:
            return  # NULL: fits every type
        verdict = fits(found, declared)
        if verdict is None:
            return
        severity, why = verdict
        cast = f"CAST(... AS {native_type(declared)})"
        if severity == "warning":
            self.report.add("schema-mismatch", f"{what}: the query yields {column.duckdb_type}"
                            f" ({format_type(found)}), which {format_type(declared)} holds "
                            f"only in part ({why}); a value that does not fit fails the run. "
                            f"Cast it in the SQL ({cast}) to say it is meant, or declare "
                            f"{format_type(found)}", at, severity="warning")
        else:
            self.report.add("schema-mismatch", f"{what}: the query yields {column.duckdb_type}"
                            f" ({format_type(found)}), which the declared "
                            f"{format_type(declared)} cannot hold ({why}); cast it in the SQL "
                            f"({cast}) or declare {format_type(found)}", at)


_EXACT_INT_BITS = {"float32": 24, "float64": 53}
_INT_BITS = {f"{sign}int{b}": b - (sign == "") for b in (8, 16, 32, 64) for sign in ("", "u")}
_TEXT_INTO = {("string", "json"), ("string", "uuid"), ("json", "string"), ("uuid", "string"),
              ("interval", "string"), ("timestamp", "timestamp_tz")}
"""Text parsed into json/uuid (checked per value), their text (an INTERVAL's is ISO 8601),
naive timestamps as UTC. (An input's uuid and json columns reach the SQL as text, so
their text must pass.)"""


def fits(found: DataType, declared: DataType) -> tuple[Severity, str] | None:
    """Whether a column of type ``found`` can be stored as ``declared``: None (every value
    fits), a warning (a narrowing: the run checks each value) or an error, with why."""
    match found, declared:
        case ListType(a), ListType(b):
            return _nested("list item", fits(a, b))
        case MapType(k, v), MapType(dk, dv):
            return _nested("map key", fits(k, dk)) or _nested("map value", fits(v, dv))
        case StructType(fields), StructType(wanted):
            have = dict(fields)
            for name, t in wanted:
                if name not in have:
                    return ("error", f"the struct has no field {name!r}")
                if (verdict := _nested(f"struct field {name!r}", fits(have[name], t))):
                    return verdict
            return None
    if is_widening(found, declared):
        return None
    old, new = family(found), family(declared)
    why = describe_change(found, declared) or f"{found} -> {declared}"
    if (old, new) in _TEXT_INTO:
        return None
    if old == new == "string":
        return None  # DuckDB has no VARCHAR(n): an input's string(2) comes out as VARCHAR
    if old == new and old in ("integer", "float", "decimal"):
        return ("warning", why)
    if (old, new) == ("integer", "decimal"):
        return ("warning", why)
    if (old, new) == ("integer", "float"):
        assert isinstance(found, Primitive) and isinstance(declared, Primitive)
        exact = _INT_BITS[found.name] <= _EXACT_INT_BITS.get(declared.name, 11)
        return None if exact else ("warning", f"{found} -> {declared} rounds large integers")
    if (old, new) == ("decimal", "integer"):
        assert isinstance(found, Decimal)
        if found.scale == 0:
            return ("warning", why)
        return ("error", f"{found} -> {declared} drops the fractional digits")
    if (old, new) == ("decimal", "float"):
        return None  # a float is an approximation by its declaration
    return ("error", why)


def _nested(where: str, verdict: tuple[Severity, str] | None) -> tuple[Severity, str] | None:
    return None if verdict is None else (verdict[0], f"{where}: {verdict[1]}")


def _find_name(sql: str, name: str | None) -> int | None:
    """The offset of the first token of ``sql`` that is the identifier ``name``."""
    if not name:
        return None
    import sqlglot
    from sqlglot import TokenType

    try:
        tokens = sqlglot.Dialect.get_or_raise("duckdb").tokenize(sql)
    except sqlglot.errors.SqlglotError:
        return None
    lowered = name.lower()
    for token in tokens:
        if token.token_type not in (TokenType.STRING, TokenType.NUMBER) and \
                token.text.lower() == lowered:
            return token.start
    return None


def _sql_line(sql: str, offset: int) -> int:
    return sql.count("\n", 0, offset) + 1


__all__ = ["check_transformer_sql", "fits"]
