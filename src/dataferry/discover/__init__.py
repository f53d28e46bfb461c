"""``ferry discover``: write a team file from a live database or a set of files.

``discover(target, ...)`` connects to a PostgreSQL, MariaDB/MySQL, SQLite or DuckDB
database (or globs files), describes its tables with the source connectors' own type
mappings (so the file it writes reads exactly as ``ferry run`` then ingests) and
returns the team file's text and what to tell the user (``Discovery``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dataferry.discover.live import LiveSource, LiveTable
from dataferry.discover.target import Target, name_of, parse_target
from dataferry.discover.teamfile import Header, render, suggestions
from dataferry.errors import SourceError, UsageError
from dataferry.model.spec import (
    DuckdbSource,
    FilesSource,
    MysqlSource,
    PostgresSource,
    SqliteSource,
)

__all__ = ["Discovery", "discover"]


@dataclass
class Discovery:
    """A discovered team file and the notes for the user (stderr)."""

    text: str
    team: str
    datasets: int
    notes: list[str] = field(default_factory=list)
    suggested: dict[str, dict[str, object]] = field(default_factory=dict)
    """Per dataset, what the file suggests in comments (``teamfile.suggestions``)."""

    def as_json(self) -> dict[str, object]:
        """``--json``: the team file as data (``model``), its text, the suggestions."""
        from dataferry.model.yamlfile import parse_yaml

        # YAML 1.2 as ferry reads it: a column or country "NO" stays a text.
        return {"team": self.team, "model": parse_yaml(self.text).value,
                "suggested": self.suggested, "notes": self.notes, "file": self.text}


def discover(target: str, model_root: Path | None, *, schema: str | None = None,
             tables: list[str] | None = None, team: str | None = None,
             zone: str = "main", owner: str = "owner@example.com") -> Discovery:
    """Describe ``target`` (a DSN, a database file or a glob) as a team file; file paths
    are written relative to ``model_root`` when inside it, else absolute."""
    found = parse_target(target, model_root)
    if schema is not None and found.kind in ("sqlite", "files"):
        raise UsageError(f"--schema does not apply to {found.kind} targets (only to "
                         "PostgreSQL, MySQL and DuckDB)")
    live = _tables(found, schema, tables)
    if not live:
        where = f" in schema {schema}" if schema else ""
        hint = "" if found.kind in ("sqlite", "files") else "; give --schema to read another"
        raise SourceError(f"{found.described} has no tables or views{where}{hint}",
                          public=True)
    team = team or name_of(schema if schema and schema not in ("public", "main")
                           else found.database, "team")
    source_name = name_of(found.database, "db")
    keys = dict(found.keys)
    notes = []
    if found.has_password:
        variable = f"{source_name.upper()}_PASSWORD"
        keys["password"] = f"${{env:{variable}}}"
        notes.append(f"the password is not written into the team file: set {variable} to it "
                     "where ferry runs (the file says password: ${env:" + variable + "})")
    source = LiveSource(found.kind, source_name, keys, live, found.described)
    text = render(source, Header(team, zone, owner))
    return Discovery(text, team, len(live), notes, suggestions(live))


def _tables(found: Target, schema: str | None, only: list[str] | None) -> list[LiveTable]:
    spec = found.spec
    if isinstance(spec, PostgresSource):
        from dataferry.discover import postgres

        return postgres.tables(spec, schema, only)
    if isinstance(spec, MysqlSource):
        from dataferry.discover import mysql

        return mysql.tables(spec, schema, only)
    if isinstance(spec, SqliteSource):
        from dataferry.discover import sqlite

        return sqlite.tables(spec, only)
    if isinstance(spec, DuckdbSource):
        from dataferry.discover import duckdb

        return duckdb.tables(spec, schema, only)
    assert isinstance(spec, FilesSource)
    from dataferry.discover import files

    return files.tables(spec, name_of(found.database, "files"))
