"""OpenLineage names of what connectors read and write, from the model alone.

They follow OpenLineage's naming spec (https://openlineage.io/docs/spec/naming): a
server's namespace is ``<scheme>://<host>:<port>``, never with a user or a password; a
local file's namespace is ``file`` and its name the absolute path. SQLite and DuckDB
files, which the spec does not name, are ``sqlite://<absolute path>`` and
``duckdb://<absolute path>`` with the table as the name, as SQLAlchemy writes their URLs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def server(scheme: str, host: str | None, port: int | str | None, default_port: int) -> str:
    """``<scheme>://<host>:<port>``: the first host of a list, ``localhost`` for a local
    socket or none given."""
    first = (host or "").split(",")[0].strip()
    if not first or first.startswith("/"):
        first = "localhost"
    port_text = str(port or "").split(",")[0].strip() or str(default_port)
    return f"{scheme}://{first}:{port_text}"


def local_path(path: str, model_root: Path) -> str:
    """The absolute path a model's ``path:`` (relative to the model) stands for."""
    given = Path(path).expanduser()
    return str(given if given.is_absolute() else (model_root / given).resolve())


def query_tables(query: str, dialect: str, *, fold: bool = False
                 ) -> list[tuple[str, str, str]]:
    """The tables a query reads, as (catalog, schema, table) ("" for a part not written):
    its common table expressions are not tables; a query sqlglot cannot parse names none.
    ``fold``: unquoted names in the dialect's case, as PostgreSQL folds them."""
    import sqlglot  # here: connectors are imported by every run, this only by lineage
    from sqlglot import exp
    from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

    try:
        tree = sqlglot.parse_one(query, read=dialect)
    except sqlglot.errors.SqlglotError:
        return []
    if fold:
        tree = normalize_identifiers(tree, dialect=dialect)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    found = {(table.catalog, table.db, table.name) for table in tree.find_all(exp.Table)
             if table.name and not (not table.db and table.name in ctes)}
    return sorted(found)


def read_tables(table: str | None, query: str | None, dialect: str,
                split: Callable[[str], tuple[str | None, str]], *, fold: bool = False
                ) -> list[tuple[str, str, str]]:
    """The tables a dataset reads, as (catalog, schema, table) ("" for a part not written):
    its ``table:`` as ``split`` reads it (none when it does not parse), else the tables of
    its ``query:`` (``query_tables``)."""
    if table:
        try:
            schema, name = split(table)
        except ValueError:
            return []
        return [("", schema or "", name)]
    return query_tables(query or "", dialect, fold=fold)
