"""interval columns: ISO 8601 text from a source, INTERVAL in a SQL transformer (bound the
same way by ``ferry check``), and a native INTERVAL column in a DuckDB delivery."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb

from tests.conftest import write_files

TEAM = """\
team: ops
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: ops.db
    datasets:
      jobs:
        table: jobs
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          span: {type: interval}
          steps: {type: list<interval>}
transformers:
  longer:
    inputs: [ops.jobs]
    sql: |
      select id, span * 2 as doubled, span + interval 1 day as later,
             extract(epoch from span) as seconds, steps, span as text
      from jobs
    columns: {id: int64, doubled: interval, later: interval, seconds: float64,
              steps: list<interval>, text: string}
    primary_key: [id]
consumers:
  wh:
    sink: {kind: duckdb, path: wh.duckdb}
    datasets:
      - {ref: ops.longer, mode: merge}
"""

SPANS = [(1, "P1Y2M-3DT4H5M6.5S", '["PT1S", null]'), (2, "PT-0.000001S", "[]"),
         (3, None, None)]


def test_intervals_reach_sql_as_interval_and_duckdb_as_a_native_column(
    tmp_path: Path, ferry: Callable[..., Any],
) -> None:
    root = write_files(tmp_path / "model", {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                                            "teams/ops/ops.yaml": TEAM})
    with sqlite3.connect(root / "ops.db") as db:
        db.execute("create table jobs (id integer primary key, span text, steps text)")
        db.executemany("insert into jobs values (?, ?, ?)", SPANS)
    db.close()
    checked = ferry("check", "--model", root)
    assert checked.code == 0, checked
    done = ferry("run", "ops.longer", "ops.wh", "--model", root)
    assert done.code == 0, done
    shown = json.loads(ferry("show", "ops.longer", "--json", "--model", root).out)["rows"]
    by_id = {row["id"]: row for row in shown}
    assert by_id[1]["doubled"] == "P28M-6DT29413S"  # 2 x (14 months, -3 days, 14706.5 s)
    assert by_id[1]["later"] == "P14M-2DT14706.5S"
    assert by_id[1]["text"] == "P14M-3DT14706.5S"  # an INTERVAL into string: its ISO text
    # DuckDB's epoch of 1 year 2 months: 365.25 + 2 x 30 days
    assert by_id[1]["seconds"] == (365.25 + 60 - 3) * 86400 + 14706.5
    assert by_id[2]["doubled"] == "PT-0.000002S"
    assert by_id[3]["doubled"] is None
    with duckdb.connect(str(root / "wh.duckdb"), read_only=True) as wh:
        kinds = dict(wh.execute("select column_name, data_type from information_schema.columns"
                                " where table_name = 'longer'").fetchall())
        assert kinds["doubled"] == "INTERVAL" and kinds["steps"] == "INTERVAL[]"
        back = wh.execute("select id, later = interval '14 months -2 days 14706.5 seconds', "
                          "steps from longer order by id").fetchall()
    assert back == [(1, True, [timedelta(seconds=1), None]), (2, False, []), (3, None, None)]
