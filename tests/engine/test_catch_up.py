"""History and append sinks that fall behind catch up version by version, on every sink kind.

Versions are published while the sink is behind; one ``ferry run CONSUMER`` then brings
it up to date. The value that existed only in a middle version must be in the history
table, and every ``valid_from``/``valid_to`` must be the publication time of the version
that made the change, as if each version had been delivered when it came out; the append
log likewise gets each version's rows tagged with that version. PostgreSQL and MariaDB
are the real servers on loopback; SQLite, DuckDB and Parquet are files.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from tests.conftest import Result, require_service, write_files
from tests.connectors.pg_helpers import temporary_database

TEAM = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: duckdb
    path: shop.duckdb
    datasets:
      items:
        table: items
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          name: {{type: string}}
consumers:
  archive:
    sink: {sink}
    datasets:
      - {{ref: shop.items, mode: history, table: items_history}}
  journal:
    sink: {sink}
    datasets:
      - {{ref: shop.items, mode: append, table: items_log}}
"""

Row = tuple[int, str | None, datetime, datetime | None]
"""id, name, valid_from, valid_to (UTC)."""


def _utc(value: Any) -> datetime | None:
    """A history timestamp as the sink returns it, as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


SELECT = "select id, name, valid_from, valid_to from {table}"


class Target:
    """A sink of one kind: its ``sink:`` spec, and how a consumer reads its table."""

    def __init__(self, spec: str, read: Callable[[str], list[tuple[Any, ...]]]) -> None:
        self.spec, self._read = spec, read

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self._read(sql)

    def history(self) -> list[Row]:
        rows = self._read(SELECT.format(table="items_history"))
        return sorted(((r[0], r[1], _utc(r[2]), _utc(r[3])) for r in rows),  # type: ignore[misc]
                      key=lambda r: (r[0], r[2]))

    def loaded(self, table: str = "items_history") -> int:
        return int(self._read("select version from _ferry_loads "
                              f"where table_name = '{table}'")[0][0])


def _duckdb_target(root: Path) -> Target:
    def read(sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(root / "out" / "t.duckdb"), read_only=True) as db:
            return db.execute(sql).fetchall()
    return Target("{kind: duckdb, path: out/t.duckdb}", read)


def _sqlite_target(root: Path) -> Target:
    def read(sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(root / "out" / "t.db") as con:
            return con.execute(sql).fetchall()
    return Target("{kind: sqlite, path: out/t.db}", read)


def _parquet_target(root: Path) -> Target:
    def read(sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect() as db:
            db.execute("set TimeZone = 'UTC'")
            for table in ("items_history", "items_log"):
                folder = root / "out" / "lake" / table
                if folder.exists():
                    db.execute(f"create view {table} as select * from "
                               f"read_parquet('{folder}/*.parquet')")
            if "_ferry_loads" in sql:  # the Parquet sink keeps its ledger in a JSON file
                return [(_parquet_version(root, sql.split("'")[1]),)]
            return db.execute(sql).fetchall()
    return Target("{kind: parquet, path: out/lake}", read)


def _parquet_version(root: Path, table: str) -> int:
    ledger = json.loads((root / "out" / "lake" / "_ferry_loads.json").read_text())
    return int(ledger[table]["version"])


@pytest.fixture(params=["duckdb", "sqlite", "parquet", "postgres", "mysql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Target]]:
    root = tmp_path / "model"
    kind = request.param
    if kind == "postgres":
        with temporary_database() as dsn:
            def read(sql: str) -> list[tuple[Any, ...]]:
                with psycopg.connect(dsn) as db:
                    return list(db.execute(sql).fetchall())
            yield root, Target(f"{{kind: postgres, dsn: '{dsn}'}}", read)
        return
    if kind == "mysql":
        require_service("mariadb")
        name = f"ferry_test_{uuid.uuid4().hex[:10]}"

        def read_mysql(sql: str) -> list[tuple[Any, ...]]:
            with pymysql.connect(host="127.0.0.1", user="root", password="", database=name,
                                 autocommit=True) as con, con.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        try:
            yield root, Target(f"{{kind: mysql, dsn: 'mysql://root@127.0.0.1:3306/mysql', "
                               f"schema: {name}}}", read_mysql)
        finally:
            with pymysql.connect(host="127.0.0.1", user="root", password="",
                                 autocommit=True) as con, con.cursor() as cursor:
                cursor.execute(f"drop database if exists {name}")
        return
    made = {"duckdb": _duckdb_target, "sqlite": _sqlite_target, "parquet": _parquet_target}
    yield root, made[kind](root)


def _model(root: Path, target: Target) -> Path:
    write_files(root, {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TEAM.format(sink=target.spec),
    })
    _source(root, "create table items (id bigint primary key, name varchar)",
            "insert into items values (1, 'one'), (2, 'two'), (3, 'three')")
    return root


def _source(root: Path, *statements: str) -> None:
    with duckdb.connect(str(root / "shop.duckdb")) as db:
        for statement in statements:
            db.execute(statement)


def _ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


def _published(root: Path, ferry: Callable[..., Result]) -> dict[int, datetime]:
    """Each version of shop.items and its publication time."""
    log = json.loads(_ok(ferry("log", "shop.items", "--model", root, "--json")).out)
    return {int(e["version"]): datetime.fromisoformat(e["created_at"].replace("Z", "+00:00"))
            for e in log}


def test_a_history_sink_behind_gets_every_version_with_its_own_time(
        target: tuple[Path, Target], ferry: Callable[..., Result]) -> None:
    root, sink = target
    _model(root, sink)
    _ok(ferry("run", "shop.archive", "--model", root))  # version 1, delivered
    assert sink.loaded() == 1
    _source(root, "update items set name = 'one, briefly' where id = 1")
    _ok(ferry("run", "shop.items", "--model", root))  # version 2: only the store has it
    _source(root, "update items set name = 'one at last' where id = 1",
            "delete from items where id = 3")
    _ok(ferry("run", "shop.items", "--model", root))  # version 3
    _source(root, "update items set name = 'TWO' where id = 2",
            "insert into items values (4, 'four')")
    _ok(ferry("run", "shop.items", "--model", root))  # version 4
    t = _published(root, ferry)
    assert sorted(t) == [1, 2, 3, 4]
    assert sink.loaded() == 1

    _ok(ferry("run", "shop.archive", "--model", root))

    assert sink.history() == [
        (1, "one", t[1], t[2]),
        (1, "one, briefly", t[2], t[3]),  # lived only in version 2
        (1, "one at last", t[3], None),
        (2, "two", t[1], t[4]),
        (2, "TWO", t[4], None),
        (3, "three", t[1], t[3]),  # removed by version 3, not 4
        (4, "four", t[4], None),
    ]
    assert sink.loaded() == 4
    again = json.loads(_ok(ferry("run", "shop.archive", "--model", root, "--json")).out)
    assert {r["status"] for r in again if r["job"].startswith("deliver")} == {"unchanged"}
    assert len(sink.history()) == 7


def test_a_catch_up_killed_between_versions_goes_on_where_it_stopped(
        target: tuple[Path, Target], ferry: Callable[..., Result]) -> None:
    root, sink = target
    _model(root, sink)
    _ok(ferry("run", "shop.archive", "--model", root))
    _source(root, "update items set name = 'one, briefly' where id = 1")
    _ok(ferry("run", "shop.items", "--model", root))
    _source(root, "delete from items where id = 3")
    _ok(ferry("run", "shop.items", "--model", root))
    t = _published(root, ferry)

    env = {**os.environ, "FERRY_CRASH_AT": "catch-up-version-applied"}
    killed = subprocess.run([sys.executable, "-m", "dataferry.cli", "run", "shop.archive",
                             "--model", str(root)], env=env, capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sink.loaded() == 2  # version 2 committed with its ledger row, version 3 not begun
    assert (1, "one, briefly", t[2], None) in sink.history()

    _ok(ferry("run", "shop.archive", "--model", root))
    assert sink.history() == [
        (1, "one", t[1], t[2]),
        (1, "one, briefly", t[2], None),
        (2, "two", t[1], None),
        (3, "three", t[1], t[3]),
    ]
    assert sink.loaded() == 3


def test_an_append_sink_behind_gets_each_versions_rows_with_their_version(
        target: tuple[Path, Target], ferry: Callable[..., Result]) -> None:
    """The append log has what it would have had delivered version by version: a row that
    changed in two versions while the sink was behind is there twice, once per version."""
    root, sink = target
    _model(root, sink)
    _ok(ferry("run", "shop.journal", "--model", root))
    _source(root, "update items set name = 'one, briefly' where id = 1")
    _ok(ferry("run", "shop.items", "--model", root))
    _source(root, "update items set name = 'one at last' where id = 1",
            "insert into items values (4, 'four')")
    _ok(ferry("run", "shop.items", "--model", root))

    _ok(ferry("run", "shop.journal", "--model", root))

    log = sink.rows("select id, name, _ferry_version from items_log")
    assert sorted(log) == [(1, "one", 1), (1, "one at last", 3), (1, "one, briefly", 2),
                           (2, "two", 1), (3, "three", 1), (4, "four", 3)]
    assert sink.loaded("items_log") == 3



def test_a_column_added_while_behind_arrives_with_its_version(
        target: tuple[Path, Target], ferry: Callable[..., Result]) -> None:
    """Version 3 adds a column: the change set from version 2, whose files lack it, reads
    it as null (this failed the ingest and the delivery with "Values list a does not have
    a column named size")."""
    root, sink = target
    _model(root, sink)
    _ok(ferry("run", "shop.archive", "--model", root))
    _source(root, "update items set name = 'one, briefly' where id = 1")
    _ok(ferry("run", "shop.items", "--model", root))
    model = root / "teams" / "shop" / "shop.yaml"
    model.write_text(model.read_text().replace(
        "          name: {type: string}\n",
        "          name: {type: string}\n          size: {type: int32}\n"))
    _source(root, "alter table items add column size integer",
            "update items set name = 'one at last', size = 7 where id = 1")
    _ok(ferry("run", "shop.items", "--model", root))
    t = _published(root, ferry)

    _ok(ferry("run", "shop.archive", "--model", root))  # failed before: no "size" in v2

    rows = sink.rows("select id, name, size from items_history where valid_to is null")
    assert sorted(rows) == [(1, "one at last", 7), (2, "two", None), (3, "three", None)]
    assert sink.history()[:3] == [(1, "one", t[1], t[2]), (1, "one, briefly", t[2], t[3]),
                                  (1, "one at last", t[3], None)]
