"""A history (SCD2) sink catching up: 10 versions behind against 1 version behind.

Builds a PostgreSQL table of ``--rows`` (default 100,000) rows in a scratch database on
127.0.0.1:5432, ingests it, delivers it in ``history`` mode to a PostgreSQL and a DuckDB
sink, then changes ``--changes`` (default 1%) of the rows per version and prints:

  delivery 1 version behind (its change set, one transaction)
  delivery 10 versions behind (each version's change set in order, one transaction each)
  their ratio                                            about ``--behind``x, no more

The catch-up applies every version on its own (so no value in between is lost), so it
costs about as much as delivering each version when it came out.

    python bench/history_catch_up.py [--rows N] [--behind N] [--changes FRACTION]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))

from postgres_flow import RUN

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

MODEL = """\
team: bench
zone: main
owners: [bench@example.com]
sources:
  pg:
    kind: postgres
    dsn: postgresql://postgres@127.0.0.1:5432/{db}
    datasets:
      events:
        table: public.events
        capture: incremental
        cursor: updated_at
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          account: {{type: int32}}
          amount: {{type: decimal(12,2)}}
          label: {{type: string}}
          updated_at: {{type: timestamp_tz, nullable: false}}
consumers:
  warehouse:
    sink: {{kind: postgres, dsn: "postgresql://postgres@127.0.0.1:5432/{db}", schema: wh}}
    datasets:
      - {{ref: bench.events, mode: history, table: events_history}}
  lake:
    sink: {{kind: duckdb, path: lake.duckdb}}
    datasets:
      - {{ref: bench.events, mode: history, table: events_history}}
"""

SINKS = {"postgres": "deliver:bench.warehouse:events_history",
         "duckdb": "deliver:bench.lake:events_history"}


def build(db: str, rows: int) -> None:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}", autocommit=True) as c:
        c.execute("""create table events (id bigint primary key, account int,
                     amount numeric(12,2), label text, updated_at timestamptz not null)""")
        c.execute(f"""insert into events select g, g % 1000, (g % 100000) / 100.0, md5(g::text),
                      now() - interval '1 day' - (g || ' seconds')::interval
                      from generate_series(1, {rows}) g""")
        c.execute("create index on events (updated_at)")
        c.execute("vacuum analyze events")


def change(db: str, rows: int, fraction: float) -> None:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}", autocommit=True) as c:
        c.execute(f"""update events set amount = amount + 1, updated_at = now()
                      where id in (select (random() * {rows - 1})::bigint + 1
                                   from generate_series(1, {int(rows * fraction)}))""")


def run(root: Path, jobs: str) -> float:
    done = subprocess.run([sys.executable, "-c", RUN, str(root), jobs], capture_output=True,
                          text=True, env={**os.environ})
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    return float(done.stdout.split()[0])


def publish(root: Path, db: str, rows: int, fraction: float) -> None:
    change(db, rows, fraction)
    time.sleep(0.01)
    run(root, "ingest:bench.events")


def line(label: str, value: str) -> None:
    print(f"{label:<56} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--behind", type=int, default=10)
    parser.add_argument("--changes", type=float, default=0.01)
    args = parser.parse_args()
    db = f"ferry_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f"create database {db}")
    try:
        with tempfile.TemporaryDirectory(prefix="ferry-history-bench-") as tmp:
            root = Path(tmp)
            (root / "teams" / "bench").mkdir(parents=True)
            (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
            (root / "teams" / "bench" / "bench.yaml").write_text(MODEL.format(db=db))
            build(db, args.rows)
            line("table", f"{args.rows:,} rows, {args.changes:.0%} changed per version")
            run(root, "ingest:bench.events")
            run(root, ",".join(SINKS.values()))
            publish(root, db, args.rows, args.changes)
            one = {sink: run(root, job) for sink, job in SINKS.items()}
            for _ in range(args.behind):
                publish(root, db, args.rows, args.changes)
            many = {sink: run(root, job) for sink, job in SINKS.items()}
            for sink in SINKS:
                line(f"{sink}: delivery 1 version behind", f"{one[sink]:7.2f} s")
                line(f"{sink}: delivery {args.behind} versions behind",
                     f"{many[sink]:7.2f} s = {many[sink] / one[sink]:.1f}x "
                     f"(target <= {args.behind}x)")
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as c:
            c.execute(f"drop database if exists {db} with (force)")


if __name__ == "__main__":
    main()
