"""Transformers on a Spark platform: the same versions as on DuckDB, from the exact input
versions (deletion vectors honoured), published through the signed path, and the
refusals ``ferry check`` makes before a run would fail."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dataferry.engine.context import RunContext
from dataferry.engine.spark import transform_on_spark
from dataferry.model.load import load_model
from tests.conftest import write_files
from tests.engine.spark_support import spark

__all__ = ["spark"]

ECOSYSTEM = """\
ecosystem: acme
zones: {eu: {}}
platforms:
  local: {engine: duckdb}
  spark: {engine: spark, master: "local[2]"}
"""

TEAM = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      orders:
        table: orders
        primary_key: [id]
        capture: incremental
        cursor: updated
        columns:
          id: {type: int64, nullable: false}
          customer: {type: int64}
          amount: {type: decimal(12,2)}
          updated: {type: int64}
      customers:
        table: customers
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          name: {type: string}
          email: {type: string}
transformers:
  revenue_spark:
    platform: spark
    inputs: [shop.orders, shop.customers]
    sql: &revenue |
      select c.name, cast(sum(o.amount) as decimal(18,2)) as total, count(*) as orders
      from orders o join customers c on c.id = o.customer group by c.name
    columns: {name: string, total: decimal(18,2), orders: int64}
    primary_key: [name]
  revenue_duckdb:
    inputs: [shop.orders, shop.customers]
    sql: *revenue
    columns: {name: string, total: decimal(18,2), orders: int64}
    primary_key: [name]
  contacts_spark:
    platform: spark
    inputs: [shop.customers]
    mask: {shop.customers: [email]}
    sql: &contacts select id, email from customers
    columns: {id: int64, email: string}
    primary_key: [id]
  nobody_spark:
    platform: spark
    inputs: [shop.customers]
    sql: select id, name from customers where id < 0
    columns: {id: int64, name: string}
  contacts_duckdb:
    inputs: [shop.customers]
    mask: {shop.customers: [email]}
    sql: *contacts
    columns: {id: int64, email: string}
    primary_key: [id]
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = write_files(tmp_path / "model", {"ferry.yaml": ECOSYSTEM,
                                            "teams/shop/shop.yaml": TEAM})
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("create table orders (id integer primary key, customer integer, "
                   "amount text, updated integer)")
        db.execute("create table customers (id integer primary key, name text, email text)")
        db.executemany("insert into orders values (?, ?, ?, 1)",
                       [(i, i % 3, f"{i * 10}.25") for i in range(1, 41)])
        db.executemany("insert into customers values (?, ?, ?)",
                       [(0, "ada", "ada@x.example"), (1, "bob", None), (2, "cy", "cy@x.example")])
    db.close()
    return root


def rows(ferry: Callable[..., Any], root: Path, ref: str) -> list[dict[str, Any]]:
    shown = ferry("show", ref, "--model", root, "--json", "--limit", "1000")
    assert shown.code == 0, shown
    data = json.loads(shown.out)
    return sorted(data["rows"], key=lambda r: json.dumps(r, sort_keys=True))


def test_a_spark_transformer_publishes_what_duckdb_computes(
        root: Path, ferry: Callable[..., Any], spark: Any) -> None:
    done = ferry("run", "shop.revenue_spark", "shop.revenue_duckdb", "--model", root, "--json")
    assert done.code == 0, done
    assert rows(ferry, root, "shop.revenue_spark") == rows(ferry, root, "shop.revenue_duckdb")
    assert len(rows(ferry, root, "shop.revenue_spark")) == 3
    assert "on Spark" in done.out  # the run says where it ran
    assert ferry("verify", "--model", root).code == 0  # signed like any version
    again = ferry("run", "shop.revenue_spark", "--model", root, "--json")
    assert again.code == 0, again
    assert "not changed" in again.out  # same inputs, same definition: not run again


def test_spark_reads_the_pinned_version_without_its_deleted_rows(
        root: Path, ferry: Callable[..., Any], spark: Any) -> None:
    assert ferry("run", "shop.orders", "shop.customers", "--model", root).code == 0
    with sqlite3.connect(root / "shop.db") as db:  # changes to old rows: deletion vectors
        db.execute("update orders set amount = '1000.00', updated = 2 where id in (3, 6, 9)")
        db.execute("update orders set customer = 2, updated = 2 where id = 1")
    db.close()
    assert ferry("run", "shop.orders", "--model", root).code == 0
    loaded = load_model(root)
    context = RunContext.from_loaded(loaded)
    orders = context.store.dataset("shop.orders")
    files = orders.active_files(orders.head_number() or 0)
    assert any(f.deletion_vector for f in files), "the merge should have left a vector"
    done = transform_on_spark(context, "shop.revenue_spark", "spark")
    assert done.published is not None
    assert ferry("run", "shop.revenue_duckdb", "--model", root).code == 0
    spark_rows = rows(ferry, root, "shop.revenue_spark")
    assert spark_rows == rows(ferry, root, "shop.revenue_duckdb")
    assert sum(int(r["orders"]) for r in spark_rows) == 40  # no row twice, none lost


def test_masked_columns_reach_spark_as_the_same_keyed_hash(
        root: Path, ferry: Callable[..., Any], spark: Any) -> None:
    done = ferry("run", "shop.contacts_spark", "shop.contacts_duckdb", "--model", root)
    assert done.code == 0, done
    spark_rows = rows(ferry, root, "shop.contacts_spark")
    assert spark_rows == rows(ferry, root, "shop.contacts_duckdb")
    assert "ada@x.example" not in json.dumps(spark_rows)
    by_id = {int(r["id"]): r["email"] for r in spark_rows}
    assert by_id[1] is None and by_id[0] and by_id[2]  # a NULL stays NULL, not a hash


def test_a_failing_query_names_the_transformer_and_keeps_values_out_of_the_public_text(
        root: Path, ferry: Callable[..., Any], spark: Any) -> None:
    team = (root / "teams/shop/shop.yaml").read_text()
    (root / "teams/shop/shop.yaml").write_text(team.replace(
        "select id, email from customers",
        "select id, cast(cast(name as int) as varchar) as email from customers"))
    done = ferry("run", "shop.contacts_spark", "--model", root, "--json")
    assert done.code == 1
    assert "shop.contacts_spark" in done.out + done.err
    assert "failed on Spark" in done.out + done.err
    runs = ferry("runs", "--model", root, "--json")
    assert "'ada'" not in runs.out  # the cast's value stays out of the run history


def test_output_arrow_types_are_the_declared_ones(root: Path, ferry: Callable[..., Any],
                                                 spark: Any) -> None:
    assert ferry("run", "shop.revenue_spark", "--model", root).code == 0
    context = RunContext.from_loaded(load_model(root))
    dataset = context.store.dataset("shop.revenue_spark")
    schema = dataset.arrow_schema(dataset.resolve(None))
    assert schema.field("total").type == pa.decimal128(18, 2)
    assert schema.field("orders").type == pa.int64()


def test_a_second_spark_master_in_one_process_is_refused_with_what_to_do(spark: Any) -> None:
    from dataferry.engine.spark_session import SparkUnavailable, spark_session
    from dataferry.model.spec import Platform

    with pytest.raises(SparkUnavailable, match="own `ferry run`"):
        spark_session("cluster", Platform(engine="spark", master="spark://elsewhere:7077"))


def test_without_pyspark_the_error_says_what_to_install(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['pyspark'] = None\n"
        "from dataferry.engine.spark_session import SparkUnavailable, spark_session\n"
        "from dataferry.model.spec import Platform\n"
        "try:\n"
        "    spark_session('spark', Platform(engine='spark'))\n"
        "except SparkUnavailable as exc:\n"
        "    print(exc.public)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert "pip install 'dataferry[spark]'" in done.stdout
    assert "Java 17" in done.stdout


def test_an_empty_output_is_an_empty_version(root: Path, ferry: Callable[..., Any],
                                             spark: Any) -> None:
    done = ferry("run", "shop.nobody_spark", "--model", root)
    assert done.code == 0, done
    assert rows(ferry, root, "shop.nobody_spark") == []
    context = RunContext.from_loaded(load_model(root))
    dataset = context.store.dataset("shop.nobody_spark")
    assert dataset.resolve(None).manifest.schema["columns"][0]["name"] == "id"
