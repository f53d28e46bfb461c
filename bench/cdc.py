"""PostgreSQL CDC: a run that reads 1% of a table's rows changed, against a full binary
COPY of the table.

Starts a PostgreSQL of its own with ``wal_level=logical`` (as the tests do: initdb in a
temporary directory, a free port), fills a table of ``--rows`` rows (id bigint primary key,
a float, a text, an int, a timestamptz), then:

  1. the first ``capture: cdc`` run (the snapshot exported by the slot's creation);
  2. ``COPY orders TO STDOUT (FORMAT binary)``, every byte read and dropped (the cost of
     moving the table once, the floor of any full read);
  3. updates ``--changed`` of the rows (default 1%, every 100th id) in one transaction
     and times the next cdc run (read the slot, stage, publish one keyed version, confirm).

Prints each time and the ratio cdc run / full COPY (the issue asks <= 0.05 at 5M rows).

    python bench/cdc.py [--rows 5000000] [--changed 0.01]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cdc.logical_server import database, logical_server

from dataferry.engine.context import RunContext
from dataferry.engine.ingest import ingest
from dataferry.model.load import load_model

TEAM = """\
team: bench
zone: main
owners: [bench@example.com]
sources:
  pg:
    kind: postgres
    dsn: {dsn}
    datasets:
      orders:
        table: orders
        capture: cdc
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          value: {{type: float64}}
          label: {{type: string}}
          count: {{type: int32}}
          at: {{type: timestamp_tz}}
"""


def _context(root: Path) -> RunContext:
    loaded = load_model(root)
    assert loaded.ecosystem is not None, loaded.report.findings
    return RunContext.from_loaded(loaded)


def _copy_seconds(dsn: str) -> tuple[float, int]:
    started = time.monotonic()
    size = 0
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor, \
            cursor.copy("copy orders to stdout (format binary)") as copy:
        for chunk in copy:
            size += len(chunk)
    return time.monotonic() - started, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--changed", type=float, default=0.01)
    args = parser.parse_args()
    every = max(1, round(1 / args.changed))
    with logical_server() as server, database(server) as dsn, \
            tempfile.TemporaryDirectory(prefix="ferry-bench-cdc-") as work:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("""create table orders (id bigint primary key, value float8,
                label text, count int, at timestamptz)""")
            started = time.monotonic()
            connection.execute(
                "insert into orders select i, i * 0.5, 'label ' || i, i %% 1000, "
                "'2026-01-01'::timestamptz + i * interval '1 second' "
                "from generate_series(1, %s) i", (args.rows,))
            connection.execute("vacuum analyze orders")
            print(f"table: {args.rows:,} rows filled in {time.monotonic() - started:.1f} s")
        root = Path(work) / "model"
        (root / "teams/bench").mkdir(parents=True)
        (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
        (root / "teams/bench/bench.yaml").write_text(TEAM.format(dsn=dsn))
        started = time.monotonic()
        first = ingest(_context(root), "bench.orders")
        print(f"first cdc run (snapshot): {time.monotonic() - started:.2f} s, "
              f"{first.rows_read:,} rows")
        copy, size = min(_copy_seconds(dsn) for _ in range(3))
        print(f"full COPY (FORMAT binary): {copy:.2f} s, {size / 2**20:,.0f} MiB (best of 3)")
        with psycopg.connect(dsn, autocommit=True) as connection:
            started = time.monotonic()
            connection.execute("update orders set value = value + 1, label = label || '!', "
                               "at = now() where id %% %s = 0", (every,))
            print(f"changed {args.rows // every:,} rows in "
                  f"{time.monotonic() - started:.2f} s")
        started = time.monotonic()
        second = ingest(_context(root), "bench.orders")
        run = time.monotonic() - started
        assert second.published is not None
        print(f"cdc run: {run:.2f} s, {second.rows_read:,} rows read, version "
              f"{second.published.version} (+{second.published.added_rows:,} "
              f"-{second.published.removed_rows:,})")
        print(f"ratio cdc run / full COPY: {run / copy:.3f} (target <= 0.05)")


if __name__ == "__main__":
    main()
