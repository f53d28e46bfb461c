"""`ferry demo`: the README's main job works offline, end to end."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow.dataset as pads


def test_demo_runs_twice_verifies_and_fills_every_consumer(tmp_path: Path,
                                                            ferry: Callable[..., object]) -> None:
    root = tmp_path / "demo"
    out = ferry("demo", root, "--scale", "2")
    assert out.code == 0, out
    assert "verified the store" in out.out and "ok" in out.out and "Try next" in out.out
    with duckdb.connect(str(root / "data/out/reporting.duckdb"), read_only=True) as db:
        orders = db.execute("select count(*) from orders").fetchone()
        loads = dict(db.execute("select table_name, version from _ferry_loads").fetchall())
    with sqlite3.connect(root / "data/out/marketing.db") as db:
        customers = db.execute("select count(*) from customers").fetchone()
        emails = db.execute("select email from customers limit 1").fetchone()
    with sqlite3.connect(root / "data/shop.db") as db:
        source_orders = db.execute("select count(*) from orders").fetchone()
    assert orders == source_orders and loads["orders"] == 2
    assert customers == (400,) and "@" not in emails[0]  # masked on the way to marketing
    lake = pads.dataset(str(root / "data/out/lake/orders_positive"), format="parquet")
    assert lake.count_rows() == source_orders[0]
    log = json.loads(ferry("log", "shop.orders", "--model", root, "--json").out)
    assert [v["version"] for v in log] == [2, 1] and log[0]["added"] > 0
