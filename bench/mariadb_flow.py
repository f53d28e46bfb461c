"""Ingest from and replace-deliver into MariaDB, against the mysql client on the same rows.

Builds a table of ``--rows`` (default 1,500,000) rows of the types of issue 13 (bigint,
int, decimal, varchar, datetime(6), date, tinyint(1), double, int unsigned; ``--text``
adds a JSON-ish TEXT column of ~200 bytes) in a scratch database on 127.0.0.1:3306, then
runs, interleaved, ``--rounds`` (default 3) times, and prints the medians:

  ingest: whole ``ferry run DATASET --full`` process (start-up included; source -> a
  signed store version) / ``mysql --quick --batch -e 'select * ...' > /dev/null``
                                                         target <= 1.5x, peak RSS < 600 MiB
  replace delivery: whole process delivering that version into a MariaDB table /
  ``mysql -e 'LOAD DATA LOCAL INFILE'`` of the same rows (a TSV written beforehand)
                                                                         target <= 1.3x
  fixed cost: ``ferry run`` of a 1-row SQLite dataset, whole process     target <= 0.5 s

Each round starts with no stored versions and an empty sink database (the metadata
database and signing keys stay, as between runs), so every round does the same work. Peak
RSS is the child process's own (``wait4``). Children run with
bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed) after a warm-up run, as an
installed package has its modules compiled.

    python bench/mariadb_flow.py [--rows N] [--rounds N] [--text] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pymysql

sys.path.insert(0, str(Path(__file__).parent))
from postgres_flow import line

MYSQL = ["mysql", "--host=127.0.0.1", "--port=3306", "--user=root"]
FERRY = [sys.executable, "-m", "dataferry.cli"]
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
"""Children may cache bytecode, as an installed package has it (a warm-up run writes it)."""

MODEL = """\
team: bench
zone: main
owners: [bench@example.com]
sources:
  maria:
    kind: mysql
    dsn: mysql://root@127.0.0.1:3306/{db}
    datasets:
      events:
        table: events
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          account: {{type: int32}}
          amount: {{type: decimal(12,2)}}
          label: {{type: string}}
          created_at: {{type: timestamp}}
          day: {{type: date}}
          active: {{type: bool}}
          score: {{type: float64}}
          hits: {{type: uint32}}
{extra}
  lite:
    kind: sqlite
    path: tiny.db
    datasets:
      tiny:
        table: tiny
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
consumers:
  warehouse:
    sink: {{kind: mysql, dsn: "mysql://root@127.0.0.1:3306/{db}", schema: {db}_wh}}
    datasets:
      - {{ref: bench.events, mode: replace, table: events_replace}}
"""
TEXT_COLUMN = "          note: {type: string}\n"

DELIVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from dataferry.broker.graph import build_graph, select
    from dataferry.broker.runner import run_jobs
    from dataferry.engine.context import RunContext
    from dataferry.model.load import load_model
    context = RunContext.from_loaded(load_model(Path(sys.argv[1])))
    jobs = [j for j in select(build_graph(context.index), context.index, [], downstream=False)
            if j.id == sys.argv[2]]
    results = run_jobs(context, jobs)
    for r in results:
        assert r.status == "succeeded", (r.job.id, r.message)
""")


def build(db: str, rows: int, text: bool) -> None:
    note = ", note TEXT" if text else ""
    note_value = (", CONCAT('{\"id\": ', seq, ', \"tags\": [\"', MD5(seq), '\", \"', "
                  "SHA1(seq), '\"], \"ok\": true, \"ratio\": ', seq / 7, '}')") if text else ""
    with pymysql.connect(host="127.0.0.1", user="root", database=db, autocommit=True) as c, \
            c.cursor() as cursor:
        cursor.execute(f"""CREATE TABLE events (id BIGINT PRIMARY KEY, account INT,
            amount DECIMAL(12,2), label VARCHAR(64), created_at DATETIME(6), day DATE,
            active TINYINT(1), score DOUBLE, hits INT UNSIGNED{note})""")
        cursor.execute(f"""INSERT INTO events SELECT seq, seq % 1000, (seq % 100000) / 100,
            MD5(seq), TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 1000003 MICROSECOND,
            DATE'2000-01-01' + INTERVAL seq % 9000 DAY, seq % 2, RAND(seq),
            4294967295 - seq{note_value} FROM seq_1_to_{rows}""")


def timed(command: list[str], *, stdout: int | None = subprocess.DEVNULL,
          cwd: Path | None = None) -> tuple[float, float, float]:
    """Seconds, CPU seconds (user + system) and peak RSS (MiB) of one whole child process."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd,
                             env=ENV)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    error = child.stderr.read().decode() if child.stderr else ""
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{error}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def select_all(db: str) -> tuple[float, float, float]:
    return timed([*MYSQL, "--quick", "--batch", db, "-e", "select * from events"])


def load_data(db: str, tsv: Path) -> tuple[float, float, float]:
    with pymysql.connect(host="127.0.0.1", user="root", database=db, autocommit=True) as c, \
            c.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS load_target")
        cursor.execute("CREATE TABLE load_target LIKE events")
    return timed([*MYSQL, "--local-infile=1", db, "-e",
                  f"LOAD DATA LOCAL INFILE '{tsv}' INTO TABLE load_target"])


def reset(root: Path, db: str) -> None:
    """No stored versions and an empty sink database: every round does the same work (the
    metadata database and signing keys stay, as they do between runs)."""
    shutil.rmtree(root / ".ferry" / "store", ignore_errors=True)
    with pymysql.connect(host="127.0.0.1", user="root", autocommit=True) as c, \
            c.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {db}_wh")


def model(root: Path, db: str, text: bool) -> None:
    (root / "teams" / "bench").mkdir(parents=True)
    (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
    (root / "teams" / "bench" / "bench.yaml").write_text(
        MODEL.format(db=db, extra=TEXT_COLUMN if text else "").replace("\n\n", "\n"))
    with sqlite3.connect(root / "tiny.db") as lite:
        lite.execute("CREATE TABLE tiny (id INTEGER PRIMARY KEY)")
        lite.execute("INSERT INTO tiny VALUES (1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--text", action="store_true", help="add a ~200-byte TEXT column")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    db = f"ferry_bench_{uuid.uuid4().hex[:8]}"
    with pymysql.connect(host="127.0.0.1", user="root", autocommit=True) as c, \
            c.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    samples: dict[str, list[tuple[float, float, float]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ferry-maria-bench-") as tmp:
            root = Path(tmp)
            model(root, db, args.text)
            build(db, args.rows, args.text)
            tsv = root / "events.tsv"
            with tsv.open("wb") as out:
                timed([*MYSQL, "--quick", "--batch", "--skip-column-names", db, "-e",
                       "select * from events"], stdout=out.fileno())
            columns = 10 if args.text else 9
            line("table", f"{args.rows:,} rows of {columns} columns, "
                          f"{tsv.stat().st_size / 2**20:,.0f} MiB as TSV")
            model_dir = ["--model", str(root)]
            timed([*FERRY, "run", "bench.tiny", "--full", *model_dir])  # warm-up
            for _ in range(args.rounds):
                reset(root, db)
                samples.setdefault("select", []).append(select_all(db))
                samples.setdefault("ingest", []).append(
                    timed([*FERRY, "run", "bench.events", "--full", *model_dir]))
                samples.setdefault("load", []).append(load_data(db, tsv))
                samples.setdefault("replace", []).append(
                    timed([sys.executable, "-c", DELIVER, str(root),
                           "deliver:bench.warehouse:events_replace"]))
                samples.setdefault("tiny", []).append(
                    timed([*FERRY, "run", "bench.tiny", "--full", *model_dir]))
    finally:
        if not args.keep:
            with pymysql.connect(host="127.0.0.1", user="root", autocommit=True) as c, \
                    c.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {db}")
                cursor.execute(f"DROP DATABASE IF EXISTS {db}_wh")
    median = {k: statistics.median(s for s, _, _ in v) for k, v in samples.items()}
    cpu = {k: statistics.median(c for _, c, _ in v) for k, v in samples.items()}
    peak = {k: max(r for _, _, r in v) for k, v in samples.items()}
    line(f"medians of {args.rounds} interleaved rounds (wall; CPU of the process)", "")
    line("baseline: mysql --quick --batch -e 'select * ...' > /dev/null",
         f"{median['select']:7.2f} s (CPU {cpu['select']:.2f} s)")
    line("ingest: ferry run --full, whole process",
         f"{median['ingest']:7.2f} s = {median['ingest'] / median['select']:.2f}x "
         f"(target <= 1.5x; CPU {cpu['ingest']:.2f} s)")
    line("peak RSS of the ingesting process", f"{peak['ingest']:7.0f} MiB (target < 600 MiB)")
    line("baseline: mysql -e 'LOAD DATA LOCAL INFILE' of the TSV",
         f"{median['load']:7.2f} s (CPU {cpu['load']:.2f} s)")
    line("replace delivery, whole process",
         f"{median['replace']:7.2f} s = {median['replace'] / median['load']:.2f}x "
         f"(target <= 1.3x; CPU {cpu['replace']:.2f} s)")
    line("peak RSS of the delivering process", f"{peak['replace']:7.0f} MiB (target < 600 MiB)")
    line("fixed cost: ferry run of a 1-row SQLite dataset, whole process",
         f"{median['tiny']:7.2f} s (target <= 0.5 s; CPU {cpu['tiny']:.2f} s)")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} cores")

if __name__ == "__main__":
    main()
