"""Ingest from and deliver into PostgreSQL, against COPY BINARY on the same table.

Builds a table of ``--rows`` (default 5,000,000) mixed-type rows in a scratch database
on 127.0.0.1:5432, then prints ratios against baselines run in this same script:

  ingest (source -> signed store version) / COPY (...) TO STDOUT (FORMAT binary) -> /dev/null
                                                         target <= 1.3x, peak RSS < 600 MiB
  delivery replace / COPY ... FROM STDIN (FORMAT binary) of the same rows   target <= 1.3x
  delivery merge of 1% changed rows / that full COPY FROM                  target <= 0.15x
  incremental ingest after 1% of rows changed at random / the COPY TO      target <= 0.25x
  a run with nothing changed                                               target < 1 s

With ``--merges N`` it compares instead ``merge_on_read: true`` with ``false`` (two stores
fed from the same table): N incremental ingests after 1% random changes each (time, bytes
written), then the cost of reading the table after them with dataferry and with outside
readers, and of ``ferry compact`` for the merge-on-read store.

    python bench/postgres_flow.py [--rows N] [--keep] [--merges N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
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
        merge_on_read: {merge_on_read}
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


def store_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / ".ferry" / "store").rglob("*") if p.is_file())


def model_root(directory: Path, db: str, merge_on_read: bool = True) -> Path:
    (directory / "teams" / "bench").mkdir(parents=True)
    (directory / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
    (directory / "teams" / "bench" / "bench.yaml").write_text(
        MODEL.format(db=db, merge_on_read=str(merge_on_read).lower()))
    return directory


def timed(work: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def read_costs(root: Path) -> dict[str, str]:
    """Seconds to read the whole table (row count and sum of a column) per reader."""
    import polars as pl
    from deltalake import DeltaTable, QueryBuilder

    from dataferry.store.dataset import DatasetStore

    dataset = DatasetStore(root / ".ferry" / "store", "bench.events")
    path = str(dataset.path)

    def ferry_scan() -> int:  # what ferry export, deliveries and transforms read
        return sum(b.num_rows for b in dataset.reader(dataset.resolve(None), ["id", "amount"]))

    def query() -> object:
        return QueryBuilder().register("t", DeltaTable(path)).execute(
            "select count(*), sum(amount) from t").read_all()

    def polars() -> object:
        return pl.scan_delta(path).select(pl.len(), pl.col("amount").sum()).collect()

    def pyarrow() -> object:
        return DeltaTable(path).to_pyarrow_table(columns=["id", "amount"]).num_rows

    out = {}
    for name, work in (("dataferry reader", ferry_scan), ("deltalake QueryBuilder", query),
                       ("polars scan_delta", polars), ("deltalake to_pyarrow_table", pyarrow)):
        try:
            seconds = min(timed(work)[0] for _ in range(2))  # the first one warms caches
            out[name] = f"{seconds:.2f} s"
        except Exception as error:  # a reader that refuses the table
            out[name] = f"refused ({type(error).__name__})"
    return out


def compare_merge_on_read(db: str, rows: int, merges: int, tmp: Path) -> None:
    roots = {flag: model_root(tmp / f"mor-{flag}", db, flag) for flag in (True, False)}
    for flag, root in roots.items():
        seconds, _ = run(root, "ingest:bench.events")
        line(f"merge_on_read: {str(flag).lower()}: first version", f"{seconds:7.2f} s, "
             f"{store_bytes(root) / 2**20:.0f} MiB")
    spent = {flag: 0.0 for flag in roots}
    written = {flag: 0 for flag in roots}
    for _ in range(merges):
        change_one_percent(db, rows)
        for flag, root in roots.items():
            before = store_bytes(root)
            seconds, _ = run(root, "ingest:bench.events")
            spent[flag] += seconds
            written[flag] += store_bytes(root) - before
    for flag in roots:
        line(f"merge_on_read: {str(flag).lower()}: {merges} incremental ingests (1% each)",
             f"{spent[flag]:7.2f} s, {spent[flag] / merges:.2f} s and "
             f"{written[flag] / merges / 2**20:.1f} MiB written each")
    line("copy-on-write / merge-on-read, ingest time",
         f"{spent[False] / spent[True]:7.2f}x")
    line("copy-on-write / merge-on-read, bytes written",
         f"{written[False] / max(written[True], 1):7.2f}x")
    for flag, root in roots.items():
        for reader, cost in read_costs(root).items():
            line(f"merge_on_read: {str(flag).lower()}: read after {merges} merges, {reader}",
                 cost)
    root = roots[True]
    done = subprocess.run([sys.executable, "-m", "dataferry.cli", "compact", "bench.events",
                           "--model", str(root), "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    result = json.loads(done.stdout)
    line("ferry compact of the merge-on-read store",
         f"{result['seconds']:7.2f} s, {result['rewritten_files']} file(s), "
         f"{result['bytes'] / 2**20:.1f} MiB written")
    for reader, cost in read_costs(root).items():
        line(f"merge_on_read: true, compacted: {reader}", cost)


def line(label: str, value: str) -> None:
    print(f"{label:<64} {value}")


def driver_of(venv: Path) -> str:
    """The ADBC PostgreSQL driver of the virtualenv ``venv`` (version, whether it is an
    optimized build, its library), asked of its Python: -O0 builds decode ~3x slower."""
    done = subprocess.run([str(venv / "bin" / "python"), "-m",
                           "dataferry.connectors.postgres.driver"],
                          capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else f"unknown ({done.stderr.strip()})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--merges", type=int, default=0,
                        help="Compare merge_on_read true/false over this many merges instead.")
    args = parser.parse_args()
    db = f"ferry_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f"create database {db}")
    try:
        with tempfile.TemporaryDirectory(prefix="ferry-pg-bench-") as tmp:
            build(db, args.rows)
            line("table", f"{args.rows:,} rows of 8 mixed-type columns")
            line("driver", driver_of(Path(sys.executable).parent.parent))
            if args.merges:
                compare_merge_on_read(db, args.rows, args.merges, Path(tmp))
                return
            root = model_root(Path(tmp) / "model", db)
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
