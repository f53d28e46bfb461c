"""A SQL transformer on Spark (local[2]) against the same transformer on DuckDB.

Publishes ``--rows`` (default 2,000,000) orders and 10,000 customers into a scratch
store, with a merge that leaves deletion vectors on part of the orders (``--changed``
per cent of them, default 1), then runs one transformer (a join and a group-by, the
example's customer_revenue) on each engine and prints:

  Spark session start (once per process)            seconds
  transform on DuckDB (read, compute, publish)      seconds
  transform on Spark, first in the session          seconds (the JVM compiling)
  transform on Spark again                          seconds, and the ratio to DuckDB

Both publish the same rows (the script checks). On one machine Spark is not expected to
win: it pays for the JVM hop, Parquet written and read back, and task scheduling; it is
there for data and clusters DuckDB's one process cannot hold. Numbers on a loaded
machine are noisy.

    python bench/spark_transform.py [--rows N] [--changed PCT]
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ECOSYSTEM = """\
ecosystem: bench
zones: {main: {}}
platforms:
  local: {engine: duckdb}
  spark: {engine: spark, master: "local[2]"}
"""

TEAM = """\
team: shop
zone: main
owners: [bench@example.com]
sources:
  db:  # never read: the bench publishes the data with ferry publish
    kind: sqlite
    path: shop.db
    datasets:
      orders:
        table: orders
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          customer_id: {type: int64, nullable: false}
          amount: {type: decimal(12,2), nullable: false}
      customers:
        table: customers
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          country: {type: string(2)}
transformers:
  revenue_duckdb:
    inputs: [shop.customers, shop.orders]
    sql: &sql |
      select c.id, c.country, cast(sum(o.amount) as decimal(18,2)) as revenue
      from customers c join orders o on o.customer_id = c.id
      group by 1, 2
    primary_key: [id]
    columns: {id: {type: int64, nullable: false}, country: string(2), revenue: decimal(18,2)}
  revenue_spark:
    platform: spark
    inputs: [shop.customers, shop.orders]
    sql: *sql
    primary_key: [id]
    columns: {id: {type: int64, nullable: false}, country: string(2), revenue: decimal(18,2)}
"""


def orders(ids: np.ndarray, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    cents = rng.integers(100, 1_000_000, len(ids))
    return pa.table({"id": pa.array(ids, pa.int64()),
                     "customer_id": pa.array(rng.integers(0, 10_000, len(ids)), pa.int64()),
                     "amount": pc.binary_join_element_wise(
                         pa.array(cents // 100).cast(pa.string()),
                         pc.utf8_lpad(pa.array(cents % 100).cast(pa.string()), 2, "0"), ".")
                     .cast(pa.decimal128(12, 2))})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--changed", type=float, default=1.0)
    args = parser.parse_args()

    from dataferry.cli.main import invoke
    from dataferry.engine.context import RunContext
    from dataferry.engine.spark import transform_on_spark
    from dataferry.engine.spark_session import spark_session
    from dataferry.engine.transform import transform
    from dataferry.model.load import load_model

    with tempfile.TemporaryDirectory(prefix="ferry-bench-spark-") as scratch:
        root = Path(scratch) / "model"
        (root / "teams/shop").mkdir(parents=True)
        (root / "ferry.yaml").write_text(ECOSYSTEM)
        (root / "teams/shop/shop.yaml").write_text(textwrap.dedent(TEAM))
        data = Path(scratch)
        pq.write_table(orders(np.arange(args.rows), 1), data / "orders.parquet")
        countries = ["NZ", "AU", "DE", "FR", "US", None]
        pq.write_table(pa.table({"id": pa.array(range(10_000), pa.int64()),
                                 "country": [countries[i % 6] for i in range(10_000)]}),
                       data / "customers.parquet")
        changed = np.random.default_rng(2).choice(
            args.rows, int(args.rows * args.changed / 100), replace=False)
        pq.write_table(orders(np.sort(changed), 3), data / "changed.parquet")
        for ref, file, mode in (("shop.orders", "orders", "replace"),
                                ("shop.customers", "customers", "replace"),
                                ("shop.orders", "changed", "merge")):
            code = invoke(["publish", ref, str(data / f"{file}.parquet"), "--mode", mode,
                           "--model", str(root)])
            assert code == 0, f"publish {file} failed"
        context = RunContext.from_loaded(load_model(root))

        started = time.perf_counter()
        spark_session("spark", context.ecosystem.platforms["spark"])
        spark_start = time.perf_counter() - started

        started = time.perf_counter()
        transform(context, "shop.revenue_duckdb", full=True)
        duck = time.perf_counter() - started

        started = time.perf_counter()
        transform_on_spark(context, "shop.revenue_spark", "spark", full=True)
        cold = time.perf_counter() - started
        started = time.perf_counter()  # the JVM's code compiled by the first run
        transform_on_spark(context, "shop.revenue_spark", "spark", full=True)
        on_spark = time.perf_counter() - started

        def rows(ref: str) -> list[tuple[object, ...]]:
            dataset = context.store.dataset(ref)
            table = dataset.reader(dataset.resolve(None)).read_all()
            return sorted(zip(*(table[c].to_pylist() for c in table.column_names),
                              strict=True))

        assert rows("shop.revenue_duckdb") == rows("shop.revenue_spark"), "results differ"
        print(f"{args.rows:,} orders ({args.changed}% changed by a merge: deletion vectors)")
        print(f"Spark session start            {spark_start:7.2f} s")
        print(f"transform on DuckDB            {duck:7.2f} s")
        print(f"transform on Spark local[2]    {cold:7.2f} s  first in the session")
        print(f"transform on Spark local[2]    {on_spark:7.2f} s  again ({on_spark / duck:.1f}x DuckDB)")


if __name__ == "__main__":
    main()
