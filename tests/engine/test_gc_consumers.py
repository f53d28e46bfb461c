"""gc and retention keep what consumers hold; ``--full`` and ``gc --force`` reload sinks.

Real runs (``ferry run``, ``ferry gc``) from a DuckDB source into SQLite, DuckDB and
PostgreSQL sinks, merge and history, with the run history in the model's SQLite metadata.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from dataferry.broker.graph import build_graph
from dataferry.broker.runner import run_jobs
from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from tests.conftest import require_service, write_files
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
      accounts:
        table: accounts
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          balance: {type: decimal(12,2)}
consumers:
  lite:
    sink: {kind: sqlite, path: out/lite.db}
    datasets:
      - {ref: shop.accounts, mode: merge}
      - {ref: shop.accounts, mode: history, table: accounts_history}
  duck:
    sink: {kind: duckdb, path: out/duck.duckdb}
    datasets:
      - {ref: shop.accounts, mode: merge}
      - {ref: shop.accounts, mode: history, table: accounts_history}
  files:
    sink: {kind: parquet, path: out/files}
    datasets:
      - {ref: shop.accounts, mode: merge}
      - {ref: shop.accounts, mode: history, table: accounts_history}
"""

Ferry = Callable[..., Any]
SINKS = ("lite", "duck", "files")


def make_model(directory: Path, consumers: str = "") -> Path:
    root = write_files(directory, {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TEAM + consumers,
    })
    source(root, "create table accounts (id bigint primary key, balance decimal(12,2))",
           "insert into accounts select i, i * 10 from range(1, 6) t(i)")
    return root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model")


def source(root: Path, *statements: str) -> None:
    with duckdb.connect(str(root / "shop.duckdb")) as db:
        for statement in statements:
            db.execute(statement)


def source_rows(root: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(root / "shop.duckdb"), read_only=True) as db:
        return [(int(i), float(b)) for i, b in db.execute(
            "select id, balance from accounts order by id").fetchall()]


def sink_rows(root: Path, consumer: str, sql: str) -> list[tuple[Any, ...]]:
    if consumer == "lite":
        with sqlite3.connect(root / "out" / "lite.db") as db:
            return list(db.execute(sql).fetchall())
    if consumer == "files":  # the Parquet sink: the tables' files and its _ferry_loads.json
        folder = root / "out" / "files"
        loads = json.loads((folder / "_ferry_loads.json").read_text())
        with duckdb.connect() as db:
            for table in ("accounts", "accounts_history"):
                db.execute(f"create view {table} as select * from "
                           f"read_parquet('{folder / table}/*.parquet')")
            db.execute("create table _ferry_loads (table_name varchar, version bigint)")
            db.executemany("insert into _ferry_loads values (?, ?)",
                           [(table, entry["version"]) for table, entry in loads.items()])
            return list(db.execute(sql).fetchall())
    with duckdb.connect(str(root / "out" / "duck.duckdb"), read_only=True) as db:
        return list(db.execute(sql).fetchall())


def merged(root: Path, consumer: str) -> list[tuple[Any, ...]]:
    return [(int(i), float(b)) for i, b in sink_rows(
        root, consumer, "select id, balance from accounts order by id")]


def current_history(root: Path, consumer: str) -> list[tuple[Any, ...]]:
    return [(int(i), float(b)) for i, b in sink_rows(
        root, consumer, "select id, balance from accounts_history where valid_to is null "
                        "order by id")]


def run(ferry: Ferry, root: Path, *args: str) -> list[dict[str, Any]]:
    """The results of ``ferry run ARGS`` (a consumer's ingest too runs: only deliveries,
    when ARGS names a consumer)."""
    out = ferry("run", *args, "--model", root, "--json")
    assert out.code == 0, out
    results: list[dict[str, Any]] = json.loads(out.out)
    if any(arg.startswith("shop.") and arg != "shop.accounts" for arg in args):
        results = [r for r in results if r["job"].startswith("deliver:")]
    return results


def new_version(ferry: Ferry, root: Path, *statements: str) -> None:
    source(root, *statements)
    [ingest] = run(ferry, root, "shop.accounts")
    assert ingest["status"] == "succeeded", ingest


def versions(ferry: Ferry, root: Path) -> list[int]:
    log = json.loads(ferry("log", "shop.accounts", "--model", root, "--json").out)
    return sorted(entry["version"] for entry in log)


def lag_behind(ferry: Ferry, root: Path) -> None:
    """Every consumer gets version 1; the dataset then moves on to version 3 (a change,
    a delete and an insert) while they lag."""
    assert {r["status"] for r in run(ferry, root)} == {"succeeded"}
    new_version(ferry, root, "update accounts set balance = 111.11 where id = 1")
    new_version(ferry, root, "delete from accounts where id = 2",
                "insert into accounts values (6, 60)")
    assert versions(ferry, root) == [1, 2, 3]


def test_gc_keeps_the_version_a_lagging_consumer_holds(root: Path, ferry: Ferry) -> None:
    lag_behind(ferry, root)
    gc = ferry("gc", "--keep", "1", "--model", root)
    assert gc.code == 0, gc
    for consumer in SINKS:
        assert f"kept version 1: deliver:shop.{consumer}:accounts holds it" in gc.out
    assert versions(ferry, root) == [1, 2, 3]  # nothing older than what they hold: all kept
    assert ferry("verify", "--model", root).code == 0

    for consumer in SINKS:
        results = run(ferry, root, f"shop.{consumer}")
        assert {r["status"] for r in results} == {"succeeded"}, results
        assert all(not r["warnings"] for r in results), results  # a change set, no reload
        assert merged(root, consumer) == source_rows(root)
        assert current_history(root, consumer) == source_rows(root)
        assert sink_rows(root, consumer, "select count(*) from accounts_history "
                                         "where id = 1") == [(2,)]  # 10.00 then 111.11

    dropped = ferry("gc", "--keep", "1", "--model", root)  # now nobody holds 1 or 2
    assert "dropped versions 1..2" in dropped.out and "kept version" not in dropped.out
    assert versions(ferry, root) == [3]


def test_retention_keeps_what_consumers_hold(root: Path, ferry: Ferry) -> None:
    shop = root / "teams" / "shop" / "shop.yaml"
    shop.write_text(shop.read_text().replace("        table: accounts\n",
                                             "        table: accounts\n        retention: 1\n"))
    lag_behind(ferry, root)
    out = json.loads(ferry("gc", "--model", root, "--json").out)
    [accounts] = [r for r in out if r["ref"] == "shop.accounts"]
    assert accounts["dropped_versions"] == []
    assert {(h["version"], h["job_id"]) for h in accounts["kept"]} >= {
        (1, "deliver:shop.lite:accounts"), (1, "deliver:shop.duck:accounts_history")}
    assert {r["status"] for r in run(ferry, root, "shop.lite")} == {"succeeded"}


def test_gc_force_then_the_next_delivery_reloads_in_full(root: Path, ferry: Ferry) -> None:
    lag_behind(ferry, root)
    gc = ferry("gc", "--keep", "1", "--force", "--model", root)
    assert gc.code == 0, gc
    assert "dropped versions 1..2" in gc.out
    assert ("dropped version 1 that deliver:shop.lite:accounts holds" in gc.out
            and "next delivery reloads it in full" in gc.out)
    assert versions(ferry, root) == [3]

    for consumer in SINKS:
        results = {r["job"]: r for r in run(ferry, root, f"shop.{consumer}")}
        assert {r["status"] for r in results.values()} == {"succeeded"}, results
        merge = results[f"deliver:shop.{consumer}:accounts"]["warnings"]
        assert len(merge) == 1 and "had version 1 of shop.accounts" in merge[0]
        assert "reloaded it in full from version 3" in merge[0]
        history = results[f"deliver:shop.{consumer}:accounts_history"]["warnings"]
        assert len(history) == 1 and "lacks the changes of version 2" in history[0]
        # The row deleted in version 3 is gone too: the reload started the table over.
        assert merged(root, consumer) == source_rows(root)
        assert current_history(root, consumer) == source_rows(root)
        # The history keeps its past: id 2 (deleted) stays, closed; nothing is open twice.
        assert sink_rows(root, consumer, "select count(*) from accounts_history "
                                         "where id = 2 and valid_to is not null") == [(1,)]
        assert sink_rows(root, consumer, "select count(*) from _ferry_loads "
                                         "where version = 3") == [(2,)]
    # The warning is in the run history, for whoever looks at the run.
    runs = json.loads(ferry("runs", "--model", root, "--json").out)
    run_id = next(r["id"] for r in runs if r["job"] == "deliver:shop.lite:accounts_history")
    detail = ferry("runs", str(run_id), "--model", root)
    assert "lacks the changes of version 2" in detail.out

    again = run(ferry, root)  # and from then on, plain change sets again
    assert {r["status"] for r in again} == {"unchanged"}, again


def test_run_full_reloads_a_sink_whatever_its_ledger_says(root: Path, ferry: Ferry) -> None:
    lag_behind(ferry, root)
    assert {r["status"] for r in run(ferry, root, "shop.lite")} == {"succeeded"}
    # The table lost rows and its ledger names a version the store never had.
    with sqlite3.connect(root / "out" / "lite.db") as db:
        db.execute("delete from accounts where id > 3")
        db.execute("update _ferry_loads set version = 99")
    full = run(ferry, root, "shop.lite", "--full")
    assert {r["status"] for r in full} == {"succeeded"}, full
    assert merged(root, "lite") == source_rows(root)
    assert current_history(root, "lite") == source_rows(root)
    assert sink_rows(root, "lite", "select table_name, version from _ferry_loads "
                                   "order by 1") == [("accounts", 3), ("accounts_history", 3)]
    assert {r["status"] for r in run(ferry, root, "shop.lite")} == {"unchanged"}


@pytest.fixture
def pg_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with temporary_database() as dsn:
        consumer = (f"  warehouse:\n    sink: {{kind: postgres, dsn: '{dsn}', schema: wh}}\n"
                    "    datasets:\n      - {ref: shop.accounts, mode: merge}\n")
        yield make_model(tmp_path / "model", consumer), dsn


def pg_merged(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as db:
        return [(int(i), float(b)) for i, b in db.execute(
            "select id, balance from wh.accounts order by id").fetchall()]


def test_postgres_merge_sink_keeps_its_version_and_reloads_after_force(
        pg_root: tuple[Path, str], ferry: Ferry) -> None:
    root, dsn = pg_root
    lag_behind(ferry, root)
    gc = ferry("gc", "--keep", "1", "--model", root)
    assert "kept version 1: deliver:shop.warehouse:accounts holds it" in gc.out
    assert {r["status"] for r in run(ferry, root, "shop.warehouse")} == {"succeeded"}
    assert pg_merged(dsn) == source_rows(root)

    new_version(ferry, root, "update accounts set balance = 0 where id = 3")
    new_version(ferry, root, "delete from accounts where id = 4")
    assert "dropped versions" in ferry("gc", "--keep", "1", "--force", "--model", root).out
    [delivered] = run(ferry, root, "shop.warehouse")
    assert delivered["status"] == "succeeded" and "reloaded it in full" in delivered["warnings"][0]
    assert pg_merged(dsn) == source_rows(root)
    with psycopg.connect(dsn) as db:
        assert db.execute("select version from wh._ferry_loads").fetchall() == [(5,)]


@pytest.fixture
def mysql_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    require_service("mariadb")
    database = f"ferry_test_{uuid.uuid4().hex[:10]}"
    consumer = ("  mart:\n    sink: {kind: mysql, dsn: 'mysql://root@127.0.0.1:3306/mysql', "
                f"schema: {database}}}\n    datasets:\n      - {{ref: shop.accounts, mode: merge}}\n"
                "      - {ref: shop.accounts, mode: history, table: accounts_history}\n")
    try:
        yield make_model(tmp_path / "model", consumer), database
    finally:
        mysql_rows(None, f"drop database if exists {database}")


def mysql_rows(database: str | None, sql: str) -> list[tuple[Any, ...]]:
    with pymysql.connect(host="127.0.0.1", user="root", password="", database=database,
                         autocommit=True) as db, db.cursor() as cursor:
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]


def test_mysql_sink_reloads_after_force_and_keeps_its_history(
        mysql_root: tuple[Path, str], ferry: Ferry) -> None:
    root, database = mysql_root
    lag_behind(ferry, root)
    assert "dropped versions 1..2" in ferry("gc", "--keep", "1", "--force", "--model", root).out
    results = {r["job"]: r for r in run(ferry, root, "shop.mart")}
    assert {r["status"] for r in results.values()} == {"succeeded"}, results
    assert "lacks the changes of version 2" in (
        results["deliver:shop.mart:accounts_history"]["warnings"][0])
    as_floats = [(int(i), float(b)) for i, b in mysql_rows(
        database, "select id, balance from accounts order by id")]
    assert as_floats == source_rows(root)
    assert [(int(i), float(b)) for i, b in mysql_rows(
        database, "select id, balance from accounts_history where valid_to is null "
                  "order by id")] == source_rows(root)
    assert mysql_rows(database, "select count(*) from accounts_history where id = 2 "
                                "and valid_to is not null") == [(1,)]
    assert mysql_rows(database, "select table_name, version from _ferry_loads "
                                "order by 1") == [("accounts", 3), ("accounts_history", 3)]


class _HeldProgress:
    """A progress display whose first rows block the delivery until the test lets go."""

    def __init__(self) -> None:
        self.reading = threading.Event()
        self.go_on = threading.Event()

    def start(self, job_id: str) -> _HeldProgress:
        return self

    def advance(self, rows: int) -> None:
        self.reading.set()
        assert self.go_on.wait(60), "the test never let the delivery go on"

    def finish(self, status: str) -> None:
        pass


def test_gc_during_a_delivery_keeps_what_it_reads(root: Path, ferry: Ferry) -> None:
    run(ferry, root, "shop.accounts")  # version 1; no consumer has anything yet
    context = RunContext.from_loaded(load_model(root))
    job = build_graph(context.index).jobs["deliver:shop.lite:accounts"]
    held = _HeldProgress()
    results: list[Any] = []
    delivery = threading.Thread(target=lambda: results.extend(
        run_jobs(context, [job], progress=held)))
    delivery.start()
    try:
        assert held.reading.wait(60), "the delivery never started reading"
        new_version(ferry, root, "update accounts set balance = 0 where id = 5")  # version 2
        gc = ferry("gc", "--keep", "1", "--model", root)
        assert gc.code == 0, gc
        assert "kept version 1: deliver:shop.lite:accounts holds it" in gc.out
        assert "running, reads it" in gc.out
        assert versions(ferry, root) == [1, 2]
    finally:
        held.go_on.set()
        delivery.join(60)
        context.close()
    assert [r.status for r in results] == ["succeeded"], results
    # Version 1 was still there, so the next delivery is a plain change set from it.
    [after] = [r for r in run(ferry, root, "shop.lite") if r["job"].endswith(":accounts")]
    assert after["status"] == "succeeded" and not after["warnings"], after
    assert merged(root, "lite") == source_rows(root)


RICH = """\
transformers:
  rich:
    inputs: [shop.accounts]
    sql: select id, balance from accounts where balance > 0
    primary_key: [id]
    columns: {id: int64, balance: decimal(12,2)}
"""


def test_gc_during_a_transform_keeps_the_inputs_it_reads(tmp_path: Path, ferry: Ferry) -> None:
    root = make_model(tmp_path / "model", RICH)
    run(ferry, root, "shop.accounts")  # version 1
    context = RunContext.from_loaded(load_model(root))
    job = build_graph(context.index).jobs["transform:shop.rich"]
    held = _HeldProgress()
    results: list[Any] = []
    transform = threading.Thread(target=lambda: results.extend(
        run_jobs(context, [job], progress=held)))
    transform.start()
    try:
        assert held.reading.wait(60), "the transform never started writing"
        new_version(ferry, root, "update accounts set balance = 1 where id = 5")  # version 2
        gc = ferry("gc", "shop.accounts", "--keep", "1", "--model", root)
        assert gc.code == 0, gc
        assert "kept version 1: transform:shop.rich" in gc.out and "reads it" in gc.out
        assert versions(ferry, root) == [1, 2]
    finally:
        held.go_on.set()
        transform.join(60)
        context.close()
    assert [r.status for r in results] == ["succeeded"], results
    log = json.loads(ferry("log", "shop.rich", "--model", root, "--json").out)
    assert [entry["version"] for entry in log] == [1]
