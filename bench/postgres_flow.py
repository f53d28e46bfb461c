"""Ingest from and deliver into PostgreSQL, against COPY BINARY on the same table.

Builds a table of ``--rows`` (default 5,000,000) mixed-type rows in a scratch database
on 127.0.0.1:5432, then prints ratios against baselines run in this same script:

  ingest (source -> signed store version) / COPY (...) TO STDOUT (FORMAT binary) -> /dev/null
                                                         target <= 1.3x, peak RSS < 600 MiB
  delivery replace / COPY ... FROM STDIN (FORMAT binary) of the same rows   target <= 1.3x
  delivery merge of 1% changed rows / that full COPY FROM                  target <= 0.15x
  incremental ingest after 1% of rows changed at random / the COPY TO      target <= 0.25x
  a run with nothing changed                                               target < 1 s

    python bench/postgres_flow.py [--rows N] [--keep]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import psycopg

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
          score: {{type: float64}}
          label: {{type: string}}
          active: {{type: bool}}
          created_at: {{type: timestamp_tz}}
          updated_at: {{type: timestamp_tz, nullable: false}}
consumers:
  warehouse:
    sink: {{kind: postgres, dsn: "postgresql://postgres@127.0.0.1:5432/{db}", schema: wh}}
    datasets:
      - {{ref: bench.events, mode: replace, table: events_replace}}
      - {{ref: bench.events, mode: merge, table: events_merge}}
"""

RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dataferry.broker.graph import build_graph, select
    from dataferry.broker.runner import run_jobs
    from dataferry.engine.context import RunContext
    from dataferry.model.load import load_model
    root = Path(sys.argv[1])
    context = RunContext.from_loaded(load_model(root))
    graph = build_graph(context.index)
    jobs = [j for j in select(graph, context.index, [], downstream=False)
            if j.id in sys.argv[2].split(",")]
    started = time.perf_counter()
    results = run_jobs(context, jobs)
    seconds = time.perf_counter() - started
    for r in results:
        assert r.status in ("succeeded", "unchanged"), (r.job.id, r.message)
    status = Path("/proc/self/status").read_text()
    peak = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1]) / 1024
    print(seconds, peak)
""")


def build(db: str, rows: int) -> None:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}", autocommit=True) as c:
        c.execute("""create table events (id bigint primary key, account int, amount numeric(12,2),
                     score double precision, label text, active boolean,
                     created_at timestamptz, updated_at timestamptz not null)""")
        c.execute(f"""insert into events select g, g % 1000, (g % 100000) / 100.0, random(),
                      md5(g::text), g % 2 = 0, now() - (g || ' seconds')::interval,
                      now() - interval '1 day' - (g || ' seconds')::interval
                      from generate_series(1, {rows}) g""")
        # a table captured incrementally has an index on its cursor column
        c.execute("create index on events (updated_at)")
        c.execute("vacuum analyze events")


def copy_out(db: str) -> float:
    started = time.perf_counter()
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}") as c, \
            c.cursor().copy("copy (select * from events) to stdout (format binary)") as copy:
        for _ in copy:
            pass
    return time.perf_counter() - started


def copy_in(db: str) -> float:
    """COPY the rows out in binary and back in to a fresh table: the load baseline."""
    url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("drop table if exists copy_target")
        c.execute("create table copy_target (like events including all)")
    with tempfile.TemporaryFile() as buffer:
        with psycopg.connect(url) as c, c.cursor().copy(
                "copy (select * from events) to stdout (format binary)") as copy:
            for block in copy:
                buffer.write(block)
        buffer.seek(0)
        started = time.perf_counter()
        with psycopg.connect(url) as c:
            with c.cursor().copy("copy copy_target from stdin (format binary)") as copy:
                while block := buffer.read(1 << 20):
                    copy.write(block)
            c.commit()
        return time.perf_counter() - started


def run(root: Path, jobs: str) -> tuple[float, float]:
    done = subprocess.run([sys.executable, "-c", RUN, str(root), jobs], capture_output=True,
                          text=True, env={**os.environ})
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    seconds, peak = done.stdout.split()
    return float(seconds), float(peak)


def change_one_percent(db: str, rows: int) -> None:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}", autocommit=True) as c:
        c.execute(f"""update events set amount = amount + 1, updated_at = now()
                      where id in (select (random() * {rows - 1})::bigint + 1
                                   from generate_series(1, {rows // 100}))""")


def line(label: str, value: str) -> None:
    print(f"{label:<64} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    db = f"ferry_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f"create database {db}")
    try:
        with tempfile.TemporaryDirectory(prefix="ferry-pg-bench-") as tmp:
            root = Path(tmp)
            (root / "teams" / "bench").mkdir(parents=True)
            (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
            (root / "teams" / "bench" / "bench.yaml").write_text(MODEL.format(db=db))
            build(db, args.rows)
            line("table", f"{args.rows:,} rows of 8 mixed-type columns")
            out = copy_out(db)
            line("baseline: COPY TO STDOUT (FORMAT binary) -> nowhere", f"{out:7.2f} s")
            seconds, peak = run(root, "ingest:bench.events")
            line("ingest into the store (new signed version)",
                 f"{seconds:7.2f} s = {seconds / out:.2f}x (target <= 1.3x)")
            line("peak RSS of the ingesting process", f"{peak:7.0f} MiB (target < 600 MiB)")
            load = copy_in(db)
            line("baseline: COPY FROM STDIN (FORMAT binary)", f"{load:7.2f} s")
            seconds, _ = run(root, "deliver:bench.warehouse:events_replace")
            line("delivery, replace", f"{seconds:7.2f} s = {seconds / load:.2f}x (target <= 1.3x)")
            run(root, "deliver:bench.warehouse:events_merge")
            change_one_percent(db, args.rows)
            seconds, _ = run(root, "ingest:bench.events")
            line("incremental ingest after 1% random changes",
                 f"{seconds:7.2f} s = {seconds / out:.2f}x (target <= 0.25x)")
            seconds, _ = run(root, "deliver:bench.warehouse:events_merge")
            line("delivery, merge of the 1% changed rows",
                 f"{seconds:7.2f} s = {seconds / load:.2f}x (target <= 0.15x)")
            seconds, _ = run(root, "ingest:bench.events")
            line("a run with nothing changed", f"{seconds:7.2f} s (target < 1 s)")
    finally:
        if not args.keep:
            with psycopg.connect(ADMIN, autocommit=True) as c:
                c.execute(f"drop database if exists {db} with (force)")


if __name__ == "__main__":
    main()
