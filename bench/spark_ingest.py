"""A large PostgreSQL ingest: dataferry's ranged COPY streams against Spark's JDBC reader.

Why Spark ingests keep the COPY streams (docs/broker.md#spark): builds a table of
``--rows`` (default 2,000,000) in a scratch database on 127.0.0.1:5432 and times

  ferry's ingest (parallel COPY over key ranges -> Arrow -> signed store version)
  Spark JDBC, partitioned on the key (--partitions, default 2), written as Parquet
        (data landed, not yet checked, signed or published: generous to Spark)

Spark's reader needs the PostgreSQL JDBC jar (``--jar``, default Debian's
/usr/share/java/postgresql.jar from libpostgresql-jdbc-java); without it only the
first line is printed. Spark's session start is timed apart. Noisy on a loaded machine.

    python bench/spark_ingest.py [--rows N] [--partitions N] [--jar PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import psycopg

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

TEAM = """\
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
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          account: {{type: int32}}
          amount: {{type: decimal(12,2)}}
          score: {{type: float64}}
          label: {{type: string}}
          created_at: {{type: timestamp_tz}}
"""


def build(db: str, rows: int) -> None:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}", autocommit=True) as c:
        c.execute("""create table events (id bigint primary key, account int,
                     amount numeric(12,2), score double precision, label text,
                     created_at timestamptz)""")
        c.execute(f"""insert into events select g, g % 1000, (g % 100000) / 100.0, random(),
                      md5(g::text), now() - (g || ' seconds')::interval
                      from generate_series(1, {rows}) g""")
        c.execute("vacuum analyze events")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--jar", default="/usr/share/java/postgresql.jar")
    args = parser.parse_args()
    db = f"ferry_bench_spark_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'create database "{db}"')
    try:
        build(db, args.rows)
        with tempfile.TemporaryDirectory(prefix="ferry-bench-spark-ingest-") as scratch:
            root = Path(scratch) / "model"
            (root / "teams/bench").mkdir(parents=True)
            (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
            (root / "teams/bench/bench.yaml").write_text(textwrap.dedent(TEAM.format(db=db)))
            from dataferry.engine.context import RunContext
            from dataferry.engine.ingest import ingest
            from dataferry.model.load import load_model

            context = RunContext.from_loaded(load_model(root))
            started = time.perf_counter()
            result = ingest(context, "bench.events")
            ferry = time.perf_counter() - started
            print(f"{args.rows:,} rows")
            print(f"ferry ingest (ranged COPY streams)      {ferry:7.2f} s "
                  f"({result.rows_read:,} rows, signed version)")
            if not Path(args.jar).exists():
                print(f"no JDBC jar at {args.jar}: Spark's JDBC reader not measured")
                return
            from pyspark.sql import SparkSession

            started = time.perf_counter()
            spark = (SparkSession.builder.master("local[2]")
                     .config("spark.jars", args.jar).config("spark.ui.enabled", "false")
                     .config("spark.ui.showConsoleProgress", "false")
                     .config("spark.sql.session.timeZone", "UTC").getOrCreate())
            spark.sparkContext.setLogLevel("ERROR")
            print(f"Spark session start                     {time.perf_counter() - started:7.2f} s")
            started = time.perf_counter()
            (spark.read.jdbc(f"jdbc:postgresql://127.0.0.1:5432/{db}?user=postgres", "events",
                             column="id", lowerBound=1, upperBound=args.rows,
                             numPartitions=args.partitions,
                             properties={"driver": "org.postgresql.Driver"})
             .write.parquet(str(Path(scratch) / "spark-out")))
            jdbc = time.perf_counter() - started
            print(f"Spark JDBC ({args.partitions} partitions) -> Parquet     {jdbc:7.2f} s "
                  f"({jdbc / ferry:.1f}x ferry's ingest)")
            spark.stop()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as c:
            c.execute(f'drop database if exists "{db}" with (force)')


if __name__ == "__main__":
    main()
