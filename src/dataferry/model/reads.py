"""Which columns of its inputs a transformer reads.

Governance holds transformers to the column rules consumers get (``policy``): a
transformer of another zone may read a restricted or pii column only masked. To tell
which columns a SQL transformer reads, its query is parsed and qualified with sqlglot
against the inputs' declared columns, and every column reference (select list, join,
filter, grouping, ordering, window) is traced to the input it comes from. Whatever cannot
be traced counts as reading *every* column of every input: a parse or resolution error,
a statement that is not a query (``SUMMARIZE``), a ``*`` left unexpanded, ``COLUMNS(...)``,
``PIVOT``/``UNPIVOT``, a column by position (``#2``), or a reference to a whole row
(``select c from customers c`` gives DuckDB a struct of every column). A Python
transformer reads every column of its inputs. Over-counting is the safe error: the
author declares a mask or narrows the query; under-counting would let a value through.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from dataferry.model.spec import DatasetCommon, Transformer


@dataclass(frozen=True)
class ColumnsRead:
    """The columns a transformer reads, per input reference.

    ``why_all`` says why every column counts (None when the query was resolved), so a
    finding can tell the author what made the check count every column.
    """

    by_input: dict[str, frozenset[str]]
    why_all: str | None = None

    def of(self, ref: str) -> frozenset[str]:
        return self.by_input.get(ref, frozenset())


def view_names(inputs: list[str]) -> dict[str, str]:
    """The table name each input has in a SQL transformer: the dataset's name, or
    ``team_dataset`` when two inputs share a name."""
    names = [ref.partition(".")[2] for ref in inputs]
    return {ref: (name if names.count(name) == 1 else ref.replace(".", "_"))
            for ref, name in zip(inputs, names, strict=True)}


def columns_read(transformer: Transformer, inputs: dict[str, DatasetCommon],
                 sql: str | None) -> ColumnsRead:
    """The columns ``transformer`` reads of each of ``inputs`` (ref -> its dataset).

    ``sql`` is the transformer's query (its ``sql``, or the text of its ``sql_file``;
    None when that file cannot be read, which counts as reading everything).
    """
    every = {ref: frozenset(spec.columns) for ref, spec in inputs.items()}
    if transformer.python is not None:
        return ColumnsRead(every, "a Python transformer gets every column of its inputs")
    if sql is None:
        return ColumnsRead(every, f"its sql_file {transformer.sql_file} could not be read")
    views = view_names(list(transformer.inputs))
    schema = tuple(
        (views[ref], tuple((column, "VARCHAR") for column in spec.columns))
        for ref, spec in inputs.items() if ref in views
    )
    resolved = _resolve(sql, schema)
    if isinstance(resolved, str):
        return ColumnsRead(every, resolved)
    # DuckDB's identifiers are case-insensitive (quoted or not) and sqlglot normalizes
    # them to lower case: match the declared names the same way.
    by_view = {view.lower(): {c.lower() for c in columns} for view, columns in resolved}
    return ColumnsRead({
        ref: frozenset(c for c in spec.columns
                       if c.lower() in by_view.get(views[ref].lower(), set()))
        for ref, spec in inputs.items() if ref in views
    })


def transformer_sql(transformer: Transformer, team_folder: Path) -> str | None:
    """The transformer's query: its ``sql``, or its ``sql_file`` read from the team's
    folder (None when it cannot be read)."""
    if transformer.sql is not None:
        return transformer.sql
    if transformer.sql_file is None:
        return None
    try:
        return (team_folder / transformer.sql_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


_Schema = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]


@functools.lru_cache(maxsize=1024)
def _resolve(sql: str, schema: _Schema) -> tuple[tuple[str, frozenset[str]], ...] | str:
    """(view, columns read) pairs, or why the query could not be resolved (a string)."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.scope import Scope, traverse_scope

    tables: dict[str, object] = {name: dict(columns) for name, columns in schema}
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
        if len(statements) != 1:  # DuckDB runs them all and returns the last one's rows
            return f"its SQL is {len(statements)} statements, not one query"
        if not isinstance(statements[0], exp.Query):  # SUMMARIZE, PIVOT statement, ...
            return f"its SQL is a {statements[0].key.upper()} statement, not a query"
        tree = qualify(statements[0], schema=tables, dialect="duckdb",
                       validate_qualify_columns=True)
        scopes = traverse_scope(tree)
    except sqlglot.errors.SqlglotError as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return f"its SQL could not be resolved ({first})"
    if tree.find(exp.Columns) is not None:
        return "its SQL uses COLUMNS(...)"
    opaque = tree.find(exp.Pivot, exp.PositionalColumn, exp.Placeholder)
    if opaque is not None:  # columns named by position or by a PIVOT's values
        return f"its SQL uses {opaque.sql(dialect='duckdb')}"
    whole_row = tree.find(exp.TableColumn)
    if whole_row is not None:
        return f"its SQL reads the whole row {whole_row.sql(dialect='duckdb')}"
    for star in tree.find_all(exp.Star):
        if not isinstance(star.parent, exp.Count):  # count(*) reads no value
            return "its SQL selects * from something that could not be expanded"
    read: dict[str, set[str]] = {}
    for scope in scopes:
        selects = scope.expression.selects if isinstance(scope.expression, exp.Query) else []
        aliases = {select.alias_or_name for select in selects}
        for column in scope.expression.find_all(exp.Column):
            if not column.table and column.name not in aliases:
                # After qualification only a name nothing declares is left without a
                # table (an output alias, as in ``order by total``, is fine).
                return f"its SQL reads {column.sql(dialect='duckdb')}, which is not a column"
        for column in scope.columns:
            source: object = None
            owner: Scope | None = scope
            while owner is not None and source is None:  # correlated: an outer source
                source = owner.sources.get(column.table)
                owner = owner.parent
            if isinstance(source, exp.Table) and source.name in tables:
                read.setdefault(source.name, set()).add(column.name)
            elif not isinstance(source, Scope):  # a derived table resolves in its own scope
                return (f"its SQL reads {column.sql(dialect='duckdb')} from something that "
                        "is not one of its inputs")
    return tuple((name, frozenset(columns)) for name, columns in read.items())
