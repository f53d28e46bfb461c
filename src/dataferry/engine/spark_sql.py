"""Transformer SQL for Spark: written once in DuckDB's dialect, carried over by sqlglot.

``to_spark`` is what a Spark transform runs and what ``ferry check`` tries on every SQL
transformer that may run on a Spark platform, so a query sqlglot cannot carry is a
``spark-unsupported`` finding on the pull request, not a failed run. sqlglot refuses
some constructs outright (``UnsupportedError``); a function it does not know is passed
through by name, which Spark would then refuse or, worse, read as another function of
that name: so an unknown DuckDB function is refused here too, by name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NotCarried:
    """Why a query cannot run on Spark, in words a model's author can act on."""

    reason: str


def to_spark(sql: str) -> str | NotCarried:
    """``sql`` (DuckDB's dialect, one query) in Spark SQL, or why it cannot be carried."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, SqlglotError, UnsupportedError

    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except SqlglotError as exc:  # its tokenizer's and parser's errors
        return NotCarried(f"sqlglot cannot parse it as DuckDB SQL: {_first_line(exc)}")
    if len(statements) != 1:
        return NotCarried(f"it has {len(statements)} statements; Spark runs one query")
    tree = statements[0]
    unknown = sorted({node.name.lower() for node in tree.find_all(exp.Anonymous)})
    if unknown:
        return NotCarried(
            f"sqlglot does not know the DuckDB function{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}, so it cannot translate "
            f"{'them' if len(unknown) > 1 else 'it'} for Spark: write it with functions "
            "both engines have, or run it on a DuckDB platform (platform: local)")
    only_duckdb = _duckdb_only(tree)
    if only_duckdb:
        return NotCarried(f"it uses {only_duckdb}, which Spark SQL does not have")
    try:
        return tree.sql(dialect="spark", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        return NotCarried(f"sqlglot cannot carry it to Spark: {_first_line(exc)}")
    except SqlglotError as exc:
        return NotCarried(f"sqlglot failed writing it for Spark: {_first_line(exc)}")


def _duckdb_only(tree: object) -> str | None:
    """A DuckDB construct sqlglot writes out for Spark unchanged, though Spark has none."""
    from sqlglot import exp

    assert isinstance(tree, exp.Expression)
    for join in tree.find_all(exp.Join):
        method = join.text("method").upper()
        if method in ("ASOF", "POSITIONAL"):
            return f"an {method} JOIN" if method == "ASOF" else "a POSITIONAL JOIN"
    for star in tree.find_all(exp.Star):
        if star.args.get("except_") or star.args.get("replace") or star.args.get("rename"):
            return "* EXCLUDE/REPLACE/RENAME"
    return None


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
