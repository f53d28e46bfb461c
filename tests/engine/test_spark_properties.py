"""Property: the example's transformer SQL gives the same rows on DuckDB and on Spark.

Random inputs shaped as acme's shop.customers and shop.orders (in the store's form, as
both engines read it), the example's own queries (``customer_revenue``'s inline SQL and
``daily_sales.sql``) plus one ordered query: Spark runs them as sqlglot carries them
(``engine.spark_sql``), reading Parquet files as a Spark transform does. Decimals must be
exact, timestamps are instants grouped by their UTC day, and NULLs sort where DuckDB puts
them (last, ascending), which Spark does only because the carried SQL says so."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataferry.engine.bind import lock_down
from dataferry.engine.spark_sql import NotCarried, to_spark
from dataferry.store.duck import spilling
from tests.engine.spark_support import spark

__all__ = ["spark"]

ACME = Path(__file__).resolve().parents[2] / "src/dataferry/examples/acme/teams/shop"
SHOP = yaml.safe_load((ACME / "shop.yaml").read_text(encoding="utf-8"))
QUERIES = {
    "customer_revenue": SHOP["transformers"]["customer_revenue"]["sql"],
    "daily_sales": (ACME / "daily_sales.sql").read_text(encoding="utf-8"),
    "ordered": "select country, id, balance from customers "
               "order by country, balance desc, id limit 7",
}

CUSTOMERS = pa.schema([pa.field("id", pa.int64(), False), ("country", pa.string()),
                       ("balance", pa.decimal128(12, 2))])
ORDERS = pa.schema([pa.field("id", pa.int64(), False), pa.field("customer_id", pa.int64(), False),
                    pa.field("amount", pa.decimal128(12, 2), False), ("currency", pa.string()),
                    pa.field("ordered_at", pa.timestamp("us", tz="UTC"), False)])

money = st.decimals(min_value=0, max_value=Decimal("9999999999.99"), places=2,
                    allow_nan=False, allow_infinity=False)
countries = st.sampled_from(["NZ", "AU", "DE", "NO", None])
moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1),
                       timezones=st.just(UTC))


@st.composite
def shop(draw: st.DrawFn) -> tuple[pa.Table, pa.Table]:
    count = draw(st.integers(1, 12))
    customers = pa.table({"id": list(range(count)),
                          "country": draw(st.lists(countries, min_size=count, max_size=count)),
                          "balance": draw(st.lists(st.none() | money, min_size=count,
                                                   max_size=count))}, schema=CUSTOMERS)
    orders = draw(st.lists(st.tuples(st.integers(0, count + 1), money,
                                     st.sampled_from(["EUR", "NZD", None]), moments),
                           max_size=40))
    return customers, pa.table({
        "id": list(range(len(orders))), "customer_id": [o[0] for o in orders],
        "amount": [o[1] for o in orders], "currency": [o[2] for o in orders],
        "ordered_at": [o[3] for o in orders]}, schema=ORDERS)


def on_duckdb(sql: str, inputs: dict[str, pa.Table]) -> list[tuple[Any, ...]]:
    """As ``engine.transform`` runs it: its connection and lock-down, no time zone set
    here (a DuckDB transform that grouped instants by local days would differ)."""
    with spilling("ferry-test-") as db:
        for name, table in inputs.items():
            db.register(name, table)
        lock_down(db)
        return [tuple(r.values()) for r in db.sql(sql).to_arrow_table().to_pylist()]


def on_spark(session: Any, sql: str, inputs: dict[str, pa.Table], work: Path
             ) -> list[tuple[Any, ...]]:
    carried = to_spark(sql)
    assert not isinstance(carried, NotCarried), carried
    for name, table in inputs.items():
        path = work / f"{name}.parquet"
        pq.write_table(table, path)
        session.read.parquet(str(path)).createOrReplaceTempView(name)
    return [tuple(r.values()) for r in session.sql(carried).toArrow().to_pylist()]


def unordered(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=lambda r: tuple((v is None, str(v)) for v in r))


_runs = itertools.count()


@pytest.mark.slow
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=shop())
def test_the_examples_sql_agrees_on_duckdb_and_spark(spark: Any, tmp_path: Path,
                                                   data: tuple[pa.Table, pa.Table]) -> None:
    customers, orders = data
    inputs = {"customers": customers, "orders": orders}
    work = tmp_path / f"run-{next(_runs)}"
    work.mkdir()
    for name, sql in QUERIES.items():
        duck, sparked = on_duckdb(sql, inputs), on_spark(spark, sql, inputs, work)
        if name == "ordered":
            assert sparked == duck, name
        else:
            assert unordered(sparked) == unordered(duck), name
