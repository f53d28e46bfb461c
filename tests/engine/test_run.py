"""`ferry run` end to end on embedded systems: a DuckDB source into DuckDB and Parquet sinks."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from tests.conftest import write_files

TEAM = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: duckdb
    path: shop.duckdb
    datasets:
      orders:
        table: orders
        capture: incremental
        cursor: updated_at
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          amount: {type: decimal(12,2)}
          email: {type: string, pii: true}
          updated_at: {type: timestamp_tz, nullable: false}
        checks:
          - unique: [id]
transformers:
  totals:
    inputs: [shop.orders]
    sql: select count(*) as orders, sum(amount) as total from orders
    columns: {orders: int64, total: decimal(18,2)}
consumers:
  mirror:
    sink: {kind: duckdb, path: out/mirror.duckdb}
    datasets:
      - {ref: shop.orders, mode: merge, mask: [email]}
      - {ref: shop.orders, mode: append, table: orders_log}
      - {ref: shop.orders, mode: history, table: orders_history}
      - {ref: shop.totals}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TEAM,
    })
    with duckdb.connect(str(root / "shop.duckdb")) as db:
        db.execute("create table orders (id bigint primary key, amount decimal(12,2), "
                   "email varchar, updated_at timestamptz not null)")
        db.execute("insert into orders select i, i * 1.5, 'c' || i || '@x.org', "
                   "timestamptz '2026-01-01 00:00:00+00' + to_seconds(i) from range(1, 1001) t(i)")
    return root


def target(root: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(root / "out" / "mirror.duckdb"), read_only=True) as db:
        return db.execute(sql).fetchall()


def test_run_twice_delivers_only_the_changes(root: Path, ferry: Callable[..., object]) -> None:
    first = ferry("run", "--model", root, "--json")
    assert first.code == 0, first
    statuses = {r["job"]: r["status"] for r in json.loads(first.out)}
    assert set(statuses.values()) == {"succeeded"}, statuses
    assert target(root, "select count(*) from orders") == [(1000,)]
    assert target(root, "select count(*) from orders_log") == [(1000,)]
    email = target(root, "select email from orders where id = 1")[0][0]
    assert len(email) == 64 and "@" not in email  # masked with a keyed hash
    assert target(root, "select orders from totals") == [(1000,)]

    again = json.loads(ferry("run", "--model", root, "--json").out)
    assert {r["status"] for r in again} == {"unchanged"}, again

    with duckdb.connect(str(root / "shop.duckdb")) as db:
        db.execute("update orders set amount = 0, updated_at = now() where id <= 10")
        db.execute("insert into orders values (5000, 1, 'new@x.org', now())")
        db.execute("delete from orders where id = 999")  # not seen by an incremental read
    third = ferry("run", "--model", root, "--json")
    assert third.code == 0, third
    assert target(root, "select count(*) from orders") == [(1001,)]
    assert target(root, "select sum(amount) from orders where id <= 10") == [(0,)]
    assert target(root, "select count(*) from orders_log") == [(1011,)]
    assert target(root, "select count(*) from orders_history where valid_to is null") == [(1001,)]
    assert target(root, "select count(*) from orders_history where id <= 10") == [(20,)]
    assert target(root, "select orders from totals") == [(1001,)]
    loads = dict(target(root, "select table_name, version from _ferry_loads"))
    assert loads["orders"] == 2 and loads["totals"] == 2
    log = json.loads(ferry("log", "shop.totals", "--model", root, "--json").out)
    assert log[0]["lineage"][0]["ref"] == "shop.orders" and log[0]["lineage"][0]["version"] == 2
    assert ferry("verify", "--model", root).code == 0


def test_a_failing_job_names_itself_and_skips_its_dependents(root: Path,
                                                              ferry: Callable[..., object]) -> None:
    (root / "shop.duckdb").unlink()
    out = ferry("run", "--model", root, "--json")
    assert out.code == 1
    statuses = {r["job"]: r["status"] for r in json.loads(out.out)}
    assert statuses["ingest:shop.orders"] == "failed"
    assert statuses["transform:shop.totals"] == "skipped"
    assert "ingest:shop.orders failed" in out.err


def test_schema_drift_is_found_before_anything_is_published(root: Path,
                                                              ferry: Callable[..., object]) -> None:
    assert ferry("check", "--connect", "--model", root).code == 0
    with duckdb.connect(str(root / "shop.duckdb")) as db:
        db.execute("alter table orders drop column email")
        db.execute("alter table orders add column coupon varchar")
    check = ferry("check", "--connect", "--model", root, "--json")
    assert check.code == 1
    findings = json.loads(check.out)["findings"]
    assert {f["code"] for f in findings} == {"schema-mismatch"}
    assert any("email" in f["message"] and f["severity"] == "error" for f in findings)
    assert any("coupon" in f["message"] and f["severity"] == "warning" for f in findings)
    out = ferry("run", "shop.orders", "--model", root)
    assert out.code == 1 and "'email' is missing at the source" in out.err
    assert not (root / ".ferry" / "store" / "shop" / "orders" / "_sig" / "m").exists()


def test_an_incremental_window_with_a_duplicate_key_publishes_nothing(
        root: Path, ferry: Callable[..., object]) -> None:
    assert ferry("run", "shop.orders", "--model", root).code == 0
    with duckdb.connect(str(root / "shop.duckdb")) as db:  # a source without a key constraint
        db.execute("create table loose as select * from orders")
        db.execute("drop table orders")
        db.execute("alter table loose rename to orders")
        db.execute("insert into orders values (7001, 1, 'a@x.org', now() - interval 1 second),"
                   " (7001, 2, 'b@x.org', now())")  # the later by the cursor wins
    assert ferry("run", "shop.orders", "--model", root).code == 0
    log = json.loads(ferry("log", "shop.orders", "--model", root, "--json").out)
    assert log[0]["version"] == 2
    with duckdb.connect(str(root / "shop.duckdb")) as db:
        db.execute("insert into orders values (7002, 1, 'a@x.org', timestamptz "
                   "'2027-01-01 00:00:00+00'), (7002, 2, 'b@x.org', timestamptz "
                   "'2027-01-01 00:00:00+00')")
    failed = ferry("run", "shop.orders", "--model", root)
    assert failed.code == 1
    assert "shop.orders: primary key (id) is not unique" in failed.err
    assert "e.g. id=7002; the data holds different rows with the same key and the same " \
           "updated_at" in failed.err
    log = json.loads(ferry("log", "shop.orders", "--model", root, "--json").out)
    assert log[0]["version"] == 2  # nothing published, the cursor did not move
