"""Peak RSS of every data path, each a whole process, on big rows and on many rows.

Issue 13: a ferry process must stay under 600 MiB of resident memory whatever the table's
size and row width. This bench builds, in scratch databases on 127.0.0.1 (PostgreSQL
5432, MariaDB 3306):

- ``big``: ``--big-rows`` (default 500) PostgreSQL rows of a ~1 MiB ``jsonb`` document;
- ``wide``: ``--maria-rows`` (default 300) MariaDB rows of a ~2 MiB ``LONGTEXT``;
- ``narrow``: ``--rows`` (default 2,000,000) PostgreSQL rows of 6 narrow columns;

then runs each path as its own process, one after the other, and prints the peak RSS the
kernel reports for it (``os.wait4``'s ``ru_maxrss``) against 600 MiB, with the data size:
the ingests (``ferry run --full``), a keyed snapshot difference (``ferry run`` after 1% of
``narrow`` changed; of ``big``, a replace), deliveries (replace and merge into PostgreSQL,
the merge again after 1% of ``big`` changed, replace into MariaDB,
SQLite, DuckDB and Parquet; each a process running that one job), a SQL transformer on
DuckDB (the job alone), ``ferry export`` and ``ferry show``.

    python bench/memory.py [--rows N] [--big-rows N] [--maria-rows N] [--only a,b] [--keep]

The issue's sizes: ``--rows 8000000 --big-rows 2000``. It exits 1 when a path passes
600 MiB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pymysql

LIMIT_MIB = 600
PG = "postgresql://postgres@127.0.0.1:5432"
FERRY = [sys.executable, "-m", "dataferry.cli"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

MODEL = """\
team: bench
zone: main
owners: [bench@example.com]
sources:
  pg:
    kind: postgres
    dsn: {pg}/{db}
    datasets:
      big:
        table: big
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          doc: {{type: json}}
      narrow:
        table: narrow
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          account: {{type: int32}}
          amount: {{type: decimal(12,2)}}
          label: {{type: string}}
          score: {{type: float64}}
          updated_at: {{type: timestamp_tz}}
  maria:
    kind: mysql
    dsn: mysql://root@127.0.0.1:3306/{db}
    datasets:
      wide:
        table: wide
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          body: {{type: string}}
transformers:
  per_account:
    inputs: [bench.narrow]
    sql: |
      select account, count(*) as n, sum(amount) as total, max(label) as last_label
      from narrow group by account
    primary_key: [account]
    columns:
      account: {{type: int32, nullable: false}}
      n: {{type: int64}}
      total: {{type: decimal(38,2)}}
      last_label: {{type: string}}
  big_copy:
    inputs: [bench.big]
    sql: select id, doc from big
    primary_key: [id]
    columns:
      id: {{type: int64, nullable: false}}
      doc: {{type: json}}
consumers:
  pgsink:
    sink: {{kind: postgres, dsn: "{pg}/{db}", schema: sink}}
    datasets:
      - {{ref: bench.big, mode: replace, table: big_replace}}
      - {{ref: bench.big, mode: merge, table: big_merge}}
      - {{ref: bench.narrow, mode: replace, table: narrow_replace}}
      - {{ref: bench.narrow, mode: merge, table: narrow_merge}}
  mariasink:
    sink: {{kind: mysql, dsn: "mysql://root@127.0.0.1:3306/{db}", schema: {db}_wh}}
    datasets:
      - {{ref: bench.wide, mode: replace, table: wide_replace}}
      - {{ref: bench.big, mode: replace, table: big_replace}}
  lite:
    sink: {{kind: sqlite, path: out/lite.db}}
    datasets:
      - {{ref: bench.big, mode: replace, table: big_replace}}
      - {{ref: bench.narrow, mode: replace, table: narrow_replace}}
  duck:
    sink: {{kind: duckdb, path: out/duck.duckdb}}
    datasets:
      - {{ref: bench.big, mode: replace, table: big_replace}}
      - {{ref: bench.narrow, mode: replace, table: narrow_replace}}
  lake:
    sink: {{kind: parquet, path: out/lake}}
    datasets:
      - {{ref: bench.big, mode: replace, table: big_replace}}
      - {{ref: bench.narrow, mode: replace, table: narrow_replace}}
"""

RUN_JOB = textwrap.dedent("""
    import sys
    from pathlib import Path
    from dataferry.broker.graph import build_graph, select
    from dataferry.broker.runner import run_jobs
    from dataferry.engine.context import RunContext
    from dataferry.model.load import load_model
    context = RunContext.from_loaded(load_model(Path(sys.argv[1])))
    jobs = [j for j in select(build_graph(context.index), context.index, [], downstream=False)
            if j.id == sys.argv[2]]
    assert jobs, sys.argv[2]
    for r in run_jobs(context, jobs):
        assert r.status in ("succeeded", "unchanged"), (r.job.id, r.status, r.message)
""")
"""Runs one job (a delivery, a transform) alone, without the ingests ``ferry run`` adds."""


def build_postgres(db: str, rows: int, big_rows: int) -> None:
    with psycopg.connect(f"{PG}/{db}", autocommit=True) as c:
        c.execute("create table big (id bigint primary key, doc jsonb)")
        # ~1 MiB a document: a 1 MiB string field (32,768 md5s) in a small object.
        c.execute(f"""insert into big select g, jsonb_build_object('id', g, 'tags',
                      jsonb_build_array(g % 7, 'x'), 'body', repeat(md5(g::text), 32768))
                      from generate_series(1, {big_rows}) g""")
        c.execute("""create table narrow (id bigint primary key, account int,
                     amount numeric(12,2), label text, score double precision,
                     updated_at timestamptz)""")
        c.execute(f"""insert into narrow select g, g % 1000, (g % 100000) / 100.0,
                      md5(g::text), random(), timestamptz '2024-01-01' + g * interval '1 s'
                      from generate_series(1, {rows}) g""")
        c.execute("vacuum analyze big")
        c.execute("vacuum analyze narrow")


def build_mariadb(db: str, rows: int) -> None:
    with pymysql.connect(host="127.0.0.1", user="root", database=db, autocommit=True) as c, \
            c.cursor() as cursor:
        cursor.execute("CREATE TABLE wide (id BIGINT PRIMARY KEY, body LONGTEXT)")
        # ~2 MiB a row: 65,536 md5s.
        cursor.execute(f"INSERT INTO wide SELECT seq, REPEAT(MD5(seq), 65536) "
                       f"FROM seq_1_to_{rows}")


def change_narrow(db: str, rows: int) -> None:
    """1% of ``narrow``'s rows updated, spread out: the next snapshot is a keyed difference."""
    with psycopg.connect(f"{PG}/{db}", autocommit=True) as c:
        c.execute(f"update narrow set score = -score where id % 100 = 7 and id <= {rows}")


def change_big(db: str) -> None:
    """1% of ``big``'s documents changed: the next merge delivery compares wide rows."""
    with psycopg.connect(f"{PG}/{db}", autocommit=True) as c:
        c.execute("update big set doc = jsonb_set(doc, '{tags}', '[\"changed\"]') "
                  "where id % 100 = 7")


def measure(command: list[str], cwd: Path) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one whole child process; exits if it fails."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             cwd=cwd, env=ENV)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[-4:])} failed:\n{output.decode()[-3000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of narrow")
    parser.add_argument("--big-rows", type=int, default=500, help="~1 MiB jsonb rows")
    parser.add_argument("--maria-rows", type=int, default=300, help="~2 MiB LONGTEXT rows")
    parser.add_argument("--only", default="", help="comma-separated path names to run")
    parser.add_argument("--keep", action="store_true", help="keep the databases and files")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    db = f"ferry_mem_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as c:
        c.execute(f"create database {db}")
    with pymysql.connect(host="127.0.0.1", user="root", autocommit=True) as c, \
            c.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    tmp = Path(tempfile.mkdtemp(prefix="ferry-mem-bench-"))
    failed = False
    try:
        root = tmp
        (root / "teams" / "bench").mkdir(parents=True)
        (root / "out").mkdir()
        (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
        (root / "teams" / "bench" / "bench.yaml").write_text(MODEL.format(pg=PG, db=db))
        started = time.perf_counter()
        build_postgres(db, args.rows, args.big_rows)
        build_mariadb(db, args.maria_rows)
        print(f"built in {time.perf_counter() - started:.0f} s: big {args.big_rows:,} x "
              f"~1 MiB jsonb, wide {args.maria_rows:,} x ~2 MiB LONGTEXT, "
              f"narrow {args.rows:,} x 6 columns")
        model = ["--model", str(root)]

        def run(*refs: str) -> list[str]:
            return [*FERRY, "run", *refs, *model]

        def job(job_id: str) -> list[str]:
            return [sys.executable, "-c", RUN_JOB, str(root), job_id]

        big = f"{args.big_rows:,} x 1 MiB"
        wide = f"{args.maria_rows:,} x 2 MiB"
        narrow = f"{args.rows:,} rows"
        paths: list[tuple[str, str, Callable[[], list[str]]]] = [
            ("ingest-big", big, lambda: run("bench.big", "--full")),
            ("ingest-wide", wide, lambda: run("bench.wide", "--full")),
            ("ingest-narrow", narrow, lambda: run("bench.narrow", "--full")),
            ("difference-narrow", narrow + ", 1% changed",
             lambda: (change_narrow(db, args.rows), run("bench.narrow"))[1]),
            ("pg-replace-big", big, lambda: job("deliver:bench.pgsink:big_replace")),
            ("pg-merge-big", big, lambda: job("deliver:bench.pgsink:big_merge")),
            ("snapshot-big", big + ", 1% changed",
             lambda: (change_big(db), run("bench.big"))[1]),
            ("pg-merge-big-changed", big + ", 1% changed",
             lambda: job("deliver:bench.pgsink:big_merge")),
            ("pg-replace-narrow", narrow, lambda: job("deliver:bench.pgsink:narrow_replace")),
            ("pg-merge-narrow", narrow, lambda: job("deliver:bench.pgsink:narrow_merge")),
            ("maria-replace-wide", wide, lambda: job("deliver:bench.mariasink:wide_replace")),
            ("maria-replace-big", big, lambda: job("deliver:bench.mariasink:big_replace")),
            ("sqlite-replace-big", big, lambda: job("deliver:bench.lite:big_replace")),
            ("sqlite-replace-narrow", narrow, lambda: job("deliver:bench.lite:narrow_replace")),
            ("duckdb-replace-big", big, lambda: job("deliver:bench.duck:big_replace")),
            ("duckdb-replace-narrow", narrow, lambda: job("deliver:bench.duck:narrow_replace")),
            ("parquet-replace-big", big, lambda: job("deliver:bench.lake:big_replace")),
            ("parquet-replace-narrow", narrow, lambda: job("deliver:bench.lake:narrow_replace")),
            ("transform-narrow", narrow, lambda: job("transform:bench.per_account")),
            ("transform-big", big, lambda: job("transform:bench.big_copy")),
            ("export-big-jsonl", big,
             lambda: [*FERRY, "export", "bench.big", str(root / "out" / "big.jsonl"), *model]),
            ("export-big-parquet", big, lambda: [*FERRY, "export", "bench.big",
                                                 str(root / "out" / "big.parquet"), *model]),
            ("export-narrow-csv", narrow,
             lambda: [*FERRY, "export", "bench.narrow", str(root / "out" / "n.csv"), *model]),
            ("show-big", big, lambda: [*FERRY, "show", "bench.big", *model]),
            ("show-narrow", narrow, lambda: [*FERRY, "show", "bench.narrow", *model]),
        ]
        print(f"{'path':<24} {'data':<28} {'peak RSS':>10} {'seconds':>8}")
        for name, size, command in paths:
            if only and name not in only and not name.startswith("ingest"):
                continue
            peak, seconds = measure(command(), root)
            verdict = "ok" if peak < LIMIT_MIB else f"OVER {LIMIT_MIB} MiB"
            failed |= peak >= LIMIT_MIB
            print(f"{name:<24} {size:<28} {peak:7.0f} MiB {seconds:7.1f}s  {verdict}",
                  flush=True)
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
              f"on {os.cpu_count()} cores")
    finally:
        if args.keep:
            print(f"kept {tmp} and databases {db} (PostgreSQL, MariaDB)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            with psycopg.connect(f"{PG}/postgres", autocommit=True) as c:
                c.execute(f"drop database if exists {db} with (force)")
            with pymysql.connect(host="127.0.0.1", user="root", autocommit=True) as c, \
                    c.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {db}")
                cursor.execute(f"DROP DATABASE IF EXISTS {db}_wh")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
