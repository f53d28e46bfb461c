"""A small model for run-history tests: a SQLite shop -> a transform -> a DuckDB sink."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dataferry.metadata import RunHistory, open_metadata
from tests.conftest import write_files

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
        capture: incremental
        cursor: updated_at
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          amount: {type: decimal(12,2)}
          updated_at: {type: timestamp_tz, nullable: false}
transformers:
  totals:
    inputs: [shop.orders]
    sql: select count(*) as orders, sum(amount) as total from orders
    columns: {orders: int64, total: decimal(18,2)}
consumers:
  mirror:
    sink: {kind: duckdb, path: out/mirror.duckdb}
    datasets:
      - {ref: shop.orders, mode: merge}
      - {ref: shop.totals}
"""

JOBS = ["ingest:shop.orders", "deliver:shop.mirror:orders", "transform:shop.totals",
        "deliver:shop.mirror:totals"]


def make_shop(root: Path, *, rows: int = 50, with_table: bool = True) -> Path:
    """The model in ``root`` over ``shop.db`` (``with_table=False``: the table is missing)."""
    write_files(root, {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                       "teams/shop/shop.yaml": TEAM})
    with sqlite3.connect(root / "shop.db") as db:
        if with_table:
            db.execute("create table orders (id integer primary key, amount text, "
                       "updated_at text not null)")
            db.executemany("insert into orders values (?, ?, ?)",
                           [(i, f"{i * 1.5:.2f}", f"2026-01-01T00:00:{i % 60:02d}+00:00")
                            for i in range(1, rows + 1)])
        else:
            db.execute("create table other (id integer)")
    db.close()
    return root


@contextmanager
def history(root: Path) -> Iterator[RunHistory]:
    """The run history in the default metadata DB, ``<root>/.ferry/ferry.db``."""
    path = root / ".ferry" / "ferry.db"
    assert path.is_file(), "the run did not create the metadata database"
    with open_metadata(f"sqlite:///{path}") as db:
        yield RunHistory(db)
