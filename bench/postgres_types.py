"""PostgreSQL ingest of every common column type, against COPY (FORMAT binary).

Builds, in a scratch database on 127.0.0.1:5432, one table ``t_<type>`` of ``id bigint
primary key`` plus one column of each type below (``--rows``, default 2,000,000), one
wide table of all of them, and a table of ``--big-rows`` (default 2,000) jsonb values of
about 1 MiB each. For each table, interleaved in one pass and repeated ``--repeat``
times (medians printed):

  baseline  COPY (select * from t) TO STDOUT (FORMAT binary), read into nothing by psycopg
  ferry     the whole ``ferry run --full bench.<table>`` as a subprocess, Python start-up
            included, making a first version (the metadata database and keys exist from a
            warm-up run); its CPU time (user + system) and peak RSS from the kernel (wait4),
            and the CPU its server backends used ("server CPU": every backend of the
            scratch database while the run lasts, sampled from /proc every 20 ms, so a
            backend's last few milliseconds may be missed; n/a where /proc cannot be read)

    python bench/postgres_types.py [--rows N] [--repeat N] [--only wide,json,uuid] [--keep]
                                   [--before SRC | --before-venv DIR]

``--only`` takes table names with or without their ``t_`` (``wide,text_array,t_json``).
``--before SRC`` also times, interleaved in the same pass, ``ferry`` importing dataferry
from another checkout's ``src`` (e.g. ``git archive main src | tar -x -C /tmp/main``), so a
change is compared with the code before it under the same load. ``--before-venv DIR``
does the same with the ``ferry`` of another virtualenv (the same dataferry code when
``PYTHONPATH`` names one ``src``): to compare two builds of the ADBC driver. The header
names the ADBC PostgreSQL driver of each (version, optimized or -O0 build, library): the
PyPI wheels of 1.9 to 1.13 are -O0 and decode ~3x slower (docs/connectors.md).

Targets (issue 13): ingest <= 1.3x the COPY baseline, peak RSS < 600 MiB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from postgres_flow import ADMIN, driver_of, line


@dataclass(frozen=True)
class Kind:
    """One column type: its PostgreSQL type, declared type, and value from ``g``."""

    name: str
    native: str
    declared: str
    value: str  # SQL expression of the generate_series value g


KINDS = [
    Kind("json", "json", "json",
         "json_build_object('id', g, 'name', md5(g::text), 'tags', json_build_array(g % 7, 'x'))"),
    Kind("jsonb", "jsonb", "json",
         "jsonb_build_object('id', g, 'name', md5(g::text), 'tags', jsonb_build_array(g % 7, 'x'))"),
    Kind("uuid", "uuid", "uuid", "md5(g::text)::uuid"),
    Kind("text_array", "text[]", "list<string>", "array[md5(g::text), (g % 100)::text]"),
    Kind("int4_array", "int4[]", "list<int32>", "array[g::int4, (g % 1000)::int4, (g % 7)::int4]"),
    Kind("numeric", "numeric", "string", "round(g::numeric / 7, 6)"),
    Kind("numeric_12_2", "numeric(12,2)", "decimal(12,2)", "(g % 10000000) / 100.0"),
    Kind("interval", "interval", "string",
         "make_interval(days => (g % 400)::int, secs => (g % 86400)::float8)"),
    Kind("interval_typed", "interval", "interval",  # checked ISO 8601 text in the store
         "make_interval(months => (g % 30)::int, days => (g % 400)::int, "
         "secs => (g % 86400)::float8 + (g % 1000) / 1000.0)"),
    Kind("bytea", "bytea", "binary", "decode(md5(g::text), 'hex')"),
    Kind("inet", "inet", "string",
         "('10.' || (g >> 16 & 255) || '.' || (g >> 8 & 255) || '.' || (g & 255))::inet"),
    Kind("enum", "bench_mood", "string", "(array['sad', 'ok', 'happy'])[g % 3 + 1]::bench_mood"),
    Kind("time", "time", "time", "time '00:00' + (g % 86400) * interval '1 second'"),
    Kind("timestamp", "timestamp", "timestamp",
         "timestamp '2020-01-01' + g * interval '1 second'"),
    Kind("timestamptz", "timestamptz", "timestamp_tz",
         "timestamptz '2020-01-01 00:00Z' + g * interval '1 second'"),
    Kind("date", "date", "date", "date '2000-01-01' + (g % 10000)::int"),
    Kind("smallint", "smallint", "int16", "(g % 32000)::smallint"),
    Kind("real", "real", "float32", "(g / 3.0)::real"),
    Kind("varchar", "varchar(40)", "string(40)", "md5(g::text)"),
    Kind("bool", "bool", "bool", "g % 2 = 0"),
]


def model(db: str, tables: dict[str, list[Kind]]) -> str:
    out = ["team: bench", "zone: main", "owners: [bench@example.com]", "sources:", "  pg:",
           "    kind: postgres", f"    dsn: postgresql://postgres@127.0.0.1:5432/{db}",
           "    datasets:"]
    for table, kinds in tables.items():
        out += [f"      {table}:", f"        table: public.{table}", "        primary_key: [id]",
                "        columns:", "          id: {type: int64, nullable: false}"]
        out += [f"          {k.name}: {{type: '{k.declared}'}}" for k in kinds]
    return "\n".join(out) + "\n"


def build(db: str, tables: dict[str, list[Kind]], rows: dict[str, int]) -> None:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}", autocommit=True) as c:
        c.execute("create type bench_mood as enum ('sad', 'ok', 'happy')")
        for table, kinds in tables.items():
            columns = "".join(f", {k.name} {k.native}" for k in kinds)
            values = "".join(f", {k.value}" for k in kinds)
            c.execute(f"create table {table} (id bigint primary key{columns})")
            c.execute(f"insert into {table} select g{values} "
                      f"from generate_series(1, {rows[table]}) g")
            c.execute(f"vacuum analyze {table}")


def big_json(db: str, rows: int) -> None:
    """``t_big_jsonb``: ``rows`` jsonb documents of about 1 MiB each."""
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}", autocommit=True) as c:
        c.execute("create table t_big_jsonb (id bigint primary key, doc jsonb)")
        c.execute(f"""insert into t_big_jsonb select g, (select jsonb_agg(jsonb_build_object(
                          'k', i, 'v', md5((g * 100000 + i)::text)))
                      from generate_series(1, 17000) i)
                      from generate_series(1, {rows}) g""")
        c.execute("vacuum analyze t_big_jsonb")


def copy_out(db: str, table: str) -> float:
    started = time.perf_counter()
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{db}") as c, \
            c.cursor().copy(f"copy (select * from {table}) to stdout (format binary)") as copy:
        for _ in copy:
            pass
    return time.perf_counter() - started


class ServerCPU:
    """The CPU used by the backends of database ``db`` while it runs (a thread samples
    ``/proc/<pid>/stat`` of each every ``interval`` seconds and keeps the largest)."""

    def __init__(self, db: str, interval: float = 0.02) -> None:
        self.db, self.interval = db, interval
        self.seen: dict[int, float] = {}
        self.readable = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> ServerCPU:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float | None:
        return sum(self.seen.values()) if self.readable else None

    def _sample(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        with psycopg.connect(ADMIN, autocommit=True) as c:
            while not self._stop.is_set():
                for (pid,) in c.execute("select pid from pg_stat_activity where datname = %s",
                                        (self.db,)).fetchall():
                    try:
                        with open(f"/proc/{pid}/stat") as stat:
                            fields = stat.read().rsplit(")", 1)[1].split()
                    except FileNotFoundError:
                        continue  # it has just ended
                    except OSError:
                        self.readable = False
                        return
                    used = (int(fields[11]) + int(fields[12])) / tick
                    self.seen[pid] = max(self.seen.get(pid, 0.0), used)
                self._stop.wait(self.interval)


def ferry_run(root: Path, table: str, source: str | None = None, db: str = "",
              venv: Path | None = None) -> tuple[float, float, float, float | None]:
    """(seconds, CPU seconds, peak RSS in MiB, server CPU seconds or None) of a whole
    ``ferry run --full``: a first version (the metadata database and the keys stay from
    the warm-up run). ``source``: a directory to import dataferry from instead of the
    installed one; ``venv``: a virtualenv whose ``ferry`` to run instead of this one's."""
    shutil.rmtree(root / ".ferry" / "store" / "bench" / table, ignore_errors=True)
    ferry = (venv / "bin" if venv else Path(sys.executable).parent) / "ferry"
    started = time.perf_counter()
    with ServerCPU(db) as server:
        process = subprocess.Popen([str(ferry), "run", f"bench.{table}", "--full", "--model",
                                    str(root)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT,
                                   env=os.environ | {"PYTHONPATH": source} if source else None)
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"ferry run bench.{table} failed:\n{output.decode()}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, server.seconds


def _server(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.median(known):6.2f} s" if len(known) == len(values) else "   n/a  "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--big-rows", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated table names (t_json, wide)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--before", default="", help="a dataferry src directory to compare with")
    parser.add_argument("--before-venv", type=Path, default=None,
                        help="a virtualenv whose ferry to compare with (another ADBC build)")
    args = parser.parse_args()
    if args.before and args.before_venv:
        parser.error("--before and --before-venv compare with one thing each: give one")
    comparing = bool(args.before or args.before_venv)
    tables = {f"t_{k.name}": [k] for k in KINDS} | {"wide": KINDS}
    rows = dict.fromkeys(tables, args.rows)
    if args.only:
        wanted = [t if t in tables else f"t_{t}" for t in args.only.split(",")]
        tables = {t: tables[t] for t in wanted if t in tables}
    db = f"ferry_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f"create database {db}")
    try:
        with tempfile.TemporaryDirectory(prefix="ferry-pg-types-") as tmp:
            root = Path(tmp)
            (root / "teams" / "bench").mkdir(parents=True)
            (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
            build(db, tables, rows)
            measured = dict(tables)
            if args.big_rows and (not args.only or "big_jsonb" in args.only):
                big_json(db, args.big_rows)
                measured["t_big_jsonb"] = [Kind("doc", "jsonb", "json", "")]
            (root / "teams" / "bench" / "bench.yaml").write_text(model(db, measured))
            print(f"{args.rows:,} rows a table (t_big_jsonb: {args.big_rows:,} rows of about "
                  f"1 MiB), medians of {args.repeat}, whole process, start-up included")
            print(f"ferry:  {driver_of(Path(sys.executable).parent.parent)}")
            if args.before_venv:
                print(f"before: {driver_of(args.before_venv)}")
            ferry_run(root, next(iter(measured)), db=db)  # warm-up: metadata db, keys, caches
            line("table", "COPY binary   ferry run   ratio   ferry CPU  server CPU  peak RSS"
                 + ("   before: run   ratio     CPU  server" if comparing else ""))
            for table in measured:
                copies, runs, cpus, servers, peaks = [], [], [], [], []
                befores: list[tuple[float, float, float, float | None]] = []
                for _ in range(args.repeat):  # interleaved: all see the same machine
                    copies.append(copy_out(db, table))
                    seconds, cpu, peak, server = ferry_run(root, table, db=db)
                    runs.append(seconds)
                    cpus.append(cpu)
                    servers.append(server)
                    peaks.append(peak)
                    if comparing:
                        befores.append(ferry_run(root, table, args.before or None, db=db,
                                                 venv=args.before_venv))
                out, took = statistics.median(copies), statistics.median(runs)
                before = ""
                if befores:
                    was = statistics.median(b[0] for b in befores)
                    before = (f" {was:9.2f} s {was / out:6.2f}x "
                              f"{statistics.median(b[1] for b in befores):6.2f} s "
                              f"{_server([b[3] for b in befores])}")
                line(table, f"{out:9.2f} s {took:9.2f} s {took / out:6.2f}x "
                            f"{statistics.median(cpus):9.2f} s {_server(servers)} "
                            f"{max(peaks):6.0f} MiB{before}")
    finally:
        if not args.keep:
            with psycopg.connect(ADMIN, autocommit=True) as c:
                c.execute(f"drop database if exists {db} with (force)")


if __name__ == "__main__":
    main()
