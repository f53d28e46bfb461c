"""Spark transformers on a store in a bucket (``store: s3://...``, moto's S3 server):
Spark (``local[2]``) reads the inputs' files from the store's local mirror, fetched for the
job and pinned until it ends, even with a mirror bound smaller than one file, and the
output is published to the bucket like any version."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.store.mirror_cache import pinning
from tests.engine.spark_support import spark
from tests.engine.test_spark import ECOSYSTEM, TEAM, rows
from tests.store.test_s3_store import S3Server, keys_in
from tests.store.test_s3_store import bucket as bucket  # a fixture
from tests.store.test_s3_store import s3_server as s3_server  # a fixture

__all__ = ["spark"]

BOUND = 500
"""Bytes: less than any data file here."""


def model(tmp_path: Path, name: str, bucket: str) -> Path:
    root = tmp_path / name
    (root / "teams" / "shop").mkdir(parents=True)
    (root / "ferry.yaml").write_text(ECOSYSTEM + f"store: s3://{bucket}/lake\n"
                                                 f"mirror_size: {BOUND}\n")
    (root / "teams" / "shop" / "shop.yaml").write_text(TEAM)
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


def mirror_bytes(root: Path) -> int:
    context = RunContext.from_loaded(load_model(root))
    try:
        cache = context.store.cache
        assert cache is not None
        cache.trim()
        return sum(stat.st_size for _, stat, _ in cache.data_files())
    finally:
        context.close()


def test_a_spark_transform_on_a_bucket_store_with_a_tiny_mirror(
        tmp_path: Path, bucket: str, s3_server: S3Server, ferry: Callable[..., Any],
        spark: Any) -> None:
    root = model(tmp_path, "one", bucket)
    assert ferry("run", "shop.orders", "shop.customers", "--model", root).code == 0
    with sqlite3.connect(root / "shop.db") as db:  # changes to old rows: deletion vectors
        db.execute("update orders set amount = '1000.00', updated = 2 where id in (3, 6, 9)")
        db.execute("update orders set customer = 2, updated = 2 where id = 1")
    db.close()
    assert ferry("run", "shop.orders", "--model", root).code == 0
    assert mirror_bytes(root) <= BOUND  # the inputs' files are in the bucket only

    done = ferry("run", "shop.revenue_spark", "shop.revenue_duckdb", "--model", root)
    assert done.code == 0, done
    with pinning():
        spark_rows = rows(ferry, root, "shop.revenue_spark")
        assert spark_rows == rows(ferry, root, "shop.revenue_duckdb")
    assert sum(int(r["orders"]) for r in spark_rows) == 40  # no row twice, none lost
    assert {r["name"] for r in spark_rows} == {"ada", "bob", "cy"}
    stored = keys_in(s3_server, bucket, "lake/shop/revenue_spark/")
    assert "_sig/m/000000000001.sig" in stored and any(k.endswith(".parquet") for k in stored)
    assert mirror_bytes(root) <= BOUND

    # Another machine, nothing but the bucket: the version Spark computed verifies.
    other = model(tmp_path, "two", bucket)
    (other / ".ferry").mkdir(exist_ok=True)
    verified = ferry("verify", "shop.revenue_spark", "--model", other)
    assert verified.code == 0, verified
    with pinning():
        assert rows(ferry, other, "shop.revenue_spark") == spark_rows
