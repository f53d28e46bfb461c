"""A DuckDB transform takes instants in UTC whatever the host's time zone, as Spark does:
``cast(ordered_at as date)`` is the UTC day, on a host in Auckland too."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

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
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          ordered_at: {type: timestamp_tz}
transformers:
  days:
    inputs: [shop.orders]
    sql: select id, cast(ordered_at as date) as day from orders
    columns: {id: int64, day: date}
    primary_key: [id]
"""


def test_a_transform_on_a_host_in_auckland_takes_the_utc_day(tmp_path: Path) -> None:
    root = write_files(tmp_path / "model", {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                                            "teams/shop/shop.yaml": TEAM})
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("create table orders (id integer primary key, ordered_at text)")
        db.execute("insert into orders values (1, '2024-01-01T20:00:00+00:00')")
    db.close()
    env = {**os.environ, "TZ": "Pacific/Auckland"}  # 09:00 on 2 January there
    for args in (["run", "shop.days"], ["show", "shop.days", "--json"]):
        done = subprocess.run([sys.executable, "-m", "dataferry.cli", *args, "--model",
                               str(root)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == [{"id": 1, "day": "2024-01-01"}]
