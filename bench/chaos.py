"""The fault suite: SIGKILL `ferry run` at random, then prove no row was lost or doubled.

Builds two keyed PostgreSQL source tables in a scratch database on 127.0.0.1:5432:
``events`` of ``--rows`` rows (default 50,000), captured incrementally (cursor
``updated_at``), and ``accounts`` of a tenth as many, captured by snapshot, so that deletes
are seen. The model, in a temporary folder, has one consumer per sink kind, each taking
both datasets:

  pg     postgres merge, in its own scratch database
  maria  mysql (MariaDB at 127.0.0.1:3306, root) history, in its own scratch database
  lite   sqlite merge
  duck   duckdb replace
  lake   parquet append

Each round changes the source at random (events: updates with a new ``updated_at`` and
inserts, no deletes, which incremental capture cannot see; accounts: updates, inserts and
deletes), starts ``ferry run`` and kills it: with
SIGKILL at a moment drawn uniformly from 0 to the length of an unkilled run (measured
first), or at a named crash point (``FERRY_CRASH_AT``, see ``dataferry.faults``). Then it
runs ``ferry run`` again, which must succeed, and compares every sink with the source by
row hash (after every ``--check-every`` rounds, and at the end):

  merge, replace  the multiset of (key, values) equals the source
  history         the open rows (valid_to NULL) equal the source; no key has two open rows
  append          no (key, _ferry_version) twice, and each source key's latest row equals
                  the source row (the log keeps deleted keys)

and runs ``ferry verify``. One line per round, then a summary; exit 1 on any mismatch,
printing the first differing keys. Only loopback connections; the scratch databases are
dropped at the end.

    python bench/chaos.py [--rows N] [--rounds N] [--seed N] [--check-every N]
                          [--sinks pg,maria,lite,duck,lake] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg

PG = "postgresql://postgres@127.0.0.1:5432/{db}"
MARIA = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
DATASETS = {"events": "incremental", "accounts": "snapshot"}
"""The source tables and their capture; only a snapshot sees deletes, so only accounts has them."""
SINKS = ("pg", "maria", "lite", "duck", "lake")
CRASH_POINTS = ("write-file", "after-files", "before-manifest", "before-signature",
                "after-commit", "catch-up-version-applied")
"""The ``crash_point(...)`` names in src that a run of this model can reach."""
CRASH_SHARE = 0.3
"""The share of rounds killed at a named crash point rather than at a random moment."""
RUN_TIMEOUT = 600

Row = tuple[int, str, str]
"""id, amount (two decimals, as text), label: what is compared, normalised across sinks."""

TEAM = """\
team: bench
zone: main
owners: [bench@example.com]
sources:
  pg:
    kind: postgres
    dsn: {source}
    datasets:
      events:
        table: public.events
        capture: incremental
        cursor: updated_at
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          amount: {{type: decimal(12,2)}}
          label: {{type: string}}
          updated_at: {{type: timestamp_tz, nullable: false}}
      accounts:
        table: public.accounts
        capture: snapshot
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          amount: {{type: decimal(12,2)}}
          label: {{type: string}}
consumers:
{consumers}"""

CONSUMERS = {
    "pg": "  pg:\n    sink: {{kind: postgres, dsn: '{target}', schema: public}}\n"
          "    datasets:\n      - {{ref: bench.events, mode: merge, table: events_merge}}\n"
             "      - {{ref: bench.accounts, mode: merge, table: accounts_merge}}\n",
    "maria": "  maria:\n    sink: {{kind: mysql, dsn: 'mysql://root@127.0.0.1:3306/mysql', "
             "schema: {maria}}}\n"
             "    datasets:\n      - {{ref: bench.events, mode: history, table: events_history}}\n"
             "      - {{ref: bench.accounts, mode: history, table: accounts_history}}\n",
    "lite": "  lite:\n    sink: {{kind: sqlite, path: out/t.db}}\n"
            "    datasets:\n      - {{ref: bench.events, mode: merge, table: events_merge}}\n"
             "      - {{ref: bench.accounts, mode: merge, table: accounts_merge}}\n",
    "duck": "  duck:\n    sink: {{kind: duckdb, path: out/t.duckdb}}\n"
            "    datasets:\n      - {{ref: bench.events, mode: replace, table: events_replace}}\n"
             "      - {{ref: bench.accounts, mode: replace, table: accounts_replace}}\n",
    "lake": "  lake:\n    sink: {{kind: parquet, path: out/lake}}\n"
            "    datasets:\n      - {{ref: bench.events, mode: append, table: events_log}}\n"
             "      - {{ref: bench.accounts, mode: append, table: accounts_log}}\n",
}


@dataclass
class Config:
    rows: int = 50_000
    rounds: int = 20
    seed: int = 0
    check_every: int = 1
    sinks: tuple[str, ...] = SINKS
    keep: bool = False
    out: Callable[[str], None] = print


@dataclass
class Summary:
    rounds: int = 0
    kills: int = 0
    mismatches: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


# --- source ------------------------------------------------------------------------------

def build_source(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("""create table events (id bigint primary key, amount numeric(12,2),
                     label text, updated_at timestamptz not null)""")
        c.execute(f"""insert into events select g, (g % 100000) / 100.0, md5(g::text),
                      now() - interval '1 day' - (g || ' seconds')::interval
                      from generate_series(1, {rows}) g""")
        c.execute("create index on events (updated_at)")
        c.execute("vacuum analyze events")
        c.execute("create table accounts (id bigint primary key, amount numeric(12,2), label text)")
        c.execute(f"""insert into accounts select g, g / 100.0, md5(g::text)
                      from generate_series(1, {max(1, rows // 10)}) g""")


def change_source(dsn: str, rng: random.Random) -> str:
    """Update and insert random rows with a fresh ``updated_at``; say what changed."""
    with psycopg.connect(dsn, autocommit=True) as c:
        top = int(c.execute("select max(id) from events").fetchone()[0])  # type: ignore[index]
        updates = rng.randint(1, max(1, top // 50))
        inserts = rng.randint(0, max(1, top // 200))
        ids = rng.sample(range(1, top + 1), min(updates, top))
        c.execute("""update events set amount = amount + 1, label = md5(label),
                     updated_at = clock_timestamp() where id = any(%s)""", (ids,))
        c.execute(f"""insert into events select g, (g % 100000) / 100.0, md5(g::text),
                      clock_timestamp() from generate_series({top + 1}, {top + inserts}) g""")
        # accounts is captured by snapshot, which sees deletes too
        keys = [int(r[0]) for r in c.execute("select id from accounts")]
        top = max(keys, default=0)
        gone = rng.sample(keys, min(len(keys) // 2, rng.randint(0, max(1, len(keys) // 100))))
        touched = rng.sample(keys, min(len(keys), rng.randint(1, max(1, len(keys) // 50))))
        added = rng.randint(0, max(1, len(keys) // 100))
        c.execute("delete from accounts where id = any(%s)", (gone,))
        c.execute("update accounts set amount = amount + 1, label = md5(label) "
                  "where id = any(%s)", (touched,))
        c.execute(f"""insert into accounts select g, g / 100.0, md5(g::text)
                      from generate_series({top + 1}, {top + added}) g""")
    return (f"events {len(ids)} updated, {inserts} inserted; accounts {len(touched)} updated, "
            f"{added} inserted, {len(gone)} deleted")


def source_rows(dsn: str) -> dict[str, list[Row]]:
    """Each source table's rows."""
    with psycopg.connect(dsn) as c:
        return {table: [_row(r) for r in c.execute(f"select id, amount, label from {table}")]
                for table in DATASETS}


def _row(r: Any) -> Row:
    amount = Decimal(str(r[1])).quantize(Decimal("0.01")) if r[1] is not None else None
    return int(r[0]), str(amount), str(r[2])


# --- sinks -------------------------------------------------------------------------------

def _duckdb_query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as db:
        return db.execute(sql).fetchall()


def _parquet_query(folder: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as db:
        db.execute(f"create view t as select * from read_parquet('{folder}/*.parquet')")
        return db.execute(sql).fetchall()


def _maria_query(database: str, sql: str) -> list[tuple[Any, ...]]:
    import pymysql
    with pymysql.connect(**MARIA, database=database) as con, con.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def compare(name: str, expected: list[Row], got: list[Row]) -> list[str]:
    """Differences between two multisets of rows, as lines naming the first keys."""
    want, have = collections.Counter(expected), collections.Counter(got)
    if want == have:
        return []
    missing, extra = want - have, have - want
    keys = sorted({r[0] for r in missing} | {r[0] for r in extra})
    return [f"{name}: {sum(missing.values())} source rows missing or different, "
            f"{sum(extra.values())} rows not in the source; first keys {keys[:10]}; "
            f"e.g. expected {sorted(missing)[:3]}, got {sorted(extra)[:3]}"]


def check_sinks(cfg: Config, root: Path, target: str, maria: str,
                source: dict[str, list[Row]]) -> list[str]:
    """Every sink's table of every dataset against the source rows: what does not match."""
    problems: list[str] = []
    for dataset, rows in source.items():
        problems += check_dataset(cfg, root, target, maria, dataset, rows)
    return problems


def check_dataset(cfg: Config, root: Path, target: str, maria: str, dataset: str,
                  source: list[Row]) -> list[str]:
    problems: list[str] = []
    columns = "id, amount, label"
    if "pg" in cfg.sinks:
        with psycopg.connect(target) as c:
            got = [_row(r) for r in c.execute(f"select {columns} from {dataset}_merge")]
        problems += compare(f"postgres merge {dataset}", source, got)
    if "lite" in cfg.sinks:
        with sqlite3.connect(root / "out" / "t.db") as con:
            got = [_row(r) for r in con.execute(f"select {columns} from {dataset}_merge")]
        problems += compare(f"sqlite merge {dataset}", source, got)
    if "duck" in cfg.sinks:
        got = [_row(r) for r in _duckdb_query(root / "out" / "t.duckdb",
                                              f"select {columns} from {dataset}_replace")]
        problems += compare(f"duckdb replace {dataset}", source, got)
    if "lake" in cfg.sinks:
        folder = root / "out" / "lake" / f"{dataset}_log"
        doubled = _parquet_query(folder, "select id, _ferry_version, count(*) from t "
                                         "group by all having count(*) > 1 limit 10")
        if doubled:
            problems.append(f"parquet append {dataset}: (key, _ferry_version) twice: {doubled}")
        latest = _parquet_query(folder, f"select {columns} from t qualify row_number() over "
                                        "(partition by id order by _ferry_version desc) = 1")
        # an append log keeps the rows of deleted keys: compare the keys the source has
        keys = {r[0] for r in source}
        got = [_row(r) for r in latest if int(r[0]) in keys]
        problems += compare(f"parquet append {dataset} (latest row per key)", source, got)
    if "maria" in cfg.sinks:
        table = f"{dataset}_history"
        twice = _maria_query(maria, f"select id, count(*) from {table} where valid_to "
                                    "is null group by id having count(*) > 1 limit 10")
        if twice:
            problems.append(f"mysql history {dataset}: keys with two open rows: {twice}")
        got = [_row(r) for r in _maria_query(
            maria, f"select {columns} from {table} where valid_to is null")]
        problems += compare(f"mysql history {dataset} (open rows)", source, got)
    return problems


# --- ferry -------------------------------------------------------------------------------

def ferry(root: Path, *args: str, env: dict[str, str] | None = None,
          kill_after: float | None = None) -> tuple[int, str]:
    """Run ``ferry ARGS --model ROOT`` in its own process group; kill the group after
    ``kill_after`` seconds if given. Returns the exit code (negative: killed) and stderr."""
    command = [sys.executable, "-m", "dataferry.cli", *args, "--model", str(root)]
    with subprocess.Popen(command, env={**os.environ, **(env or {})}, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          start_new_session=True) as process:
        try:
            _, err = process.communicate(timeout=kill_after if kill_after is not None
                                         else RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            _, err = process.communicate()
        return process.returncode, err


def complete_run(root: Path) -> float:
    started = time.perf_counter()
    code, err = ferry(root, "run")
    if code != 0:
        raise RuntimeError(f"ferry run after a kill exited {code}: {err.strip()[-2000:]}")
    return time.perf_counter() - started


# --- setup -------------------------------------------------------------------------------

@contextmanager
def pg_database() -> Iterator[str]:
    name = f"ferry_chaos_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG.format(db="postgres"), autocommit=True) as c:
        c.execute(f"create database {name}")
    try:
        yield PG.format(db=name)
    finally:
        with psycopg.connect(PG.format(db="postgres"), autocommit=True) as c:
            c.execute(f"drop database if exists {name} with (force)")


@contextmanager
def maria_database() -> Iterator[str]:
    import pymysql
    name = f"ferry_chaos_{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        with pymysql.connect(**MARIA, autocommit=True) as con, con.cursor() as cursor:
            cursor.execute(f"drop database if exists {name}")


def write_model(root: Path, source: str, target: str, maria: str, sinks: tuple[str, ...]) -> None:
    (root / "teams" / "bench").mkdir(parents=True)
    (root / "out").mkdir()
    (root / "ferry.yaml").write_text("ecosystem: bench\nzones: {main: {}}\n")
    consumers = "".join(CONSUMERS[s].format(target=target, maria=maria) for s in sinks)
    (root / "teams" / "bench" / "bench.yaml").write_text(
        TEAM.format(source=source, consumers=consumers))


# --- rounds ------------------------------------------------------------------------------

def chaos(cfg: Config) -> Summary:
    """Set up, run ``cfg.rounds`` killed rounds with checks, tear down; the summary."""
    unknown = set(cfg.sinks) - set(SINKS)
    if unknown:
        raise SystemExit(f"unknown sinks {sorted(unknown)}: choose from {', '.join(SINKS)}")
    rng = random.Random(cfg.seed)
    summary = Summary()
    started = time.perf_counter()
    with ExitStack() as stack:
        source = stack.enter_context(pg_database())
        target = stack.enter_context(pg_database()) if "pg" in cfg.sinks else ""
        maria = stack.enter_context(maria_database()) if "maria" in cfg.sinks else ""
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ferry-chaos-"))
        if cfg.keep:
            stack.pop_all()
        root = Path(tmp)
        write_model(root, source, target, maria, cfg.sinks)
        build_source(source, cfg.rows)
        first = complete_run(root)
        change_source(source, rng)
        typical = complete_run(root)
        cfg.out(f"setup: {cfg.rows:,} rows, sinks {','.join(cfg.sinks)}; first run {first:.1f} s,"
                f" an unkilled incremental run {typical:.1f} s")
        for number in range(1, cfg.rounds + 1):
            changed = change_source(source, rng)
            round_started = time.perf_counter()
            if rng.random() < CRASH_SHARE:
                point = rng.choice(CRASH_POINTS)
                code, _ = ferry(root, "run", env={"FERRY_CRASH_AT": point})
                where = f"at {point}" if code == -signal.SIGKILL else f"never ({point} not reached)"
            else:
                moment = rng.uniform(0, typical)
                code, _ = ferry(root, "run", kill_after=moment)
                where = (f"after {moment:.2f} s" if code == -signal.SIGKILL
                         else f"never (finished before {moment:.2f} s)")
            killed = code == -signal.SIGKILL
            summary.kills += killed
            problems: list[str] = []
            try:
                complete_run(root)
            except RuntimeError as failed:  # the run after a kill must recover: a finding
                problems.append(str(failed))
            checked = not problems and (number % cfg.check_every == 0 or number == cfg.rounds)
            if checked:
                try:
                    problems += check_sinks(cfg, root, target, maria, source_rows(source))
                except Exception as error:  # e.g. a sink table that is gone: a finding too
                    problems.append(f"reading the sinks failed: {error!r}")
                code, err = ferry(root, "verify")
                if code != 0:
                    problems.append(f"ferry verify exited {code}: {err.strip()[-500:]}")
            summary.rounds += 1
            summary.mismatches += len(problems)
            summary.problems += problems
            cfg.out(f"round {number:>3}: {changed}; killed {where}; "
                    f"{time.perf_counter() - round_started:6.1f} s; "
                    f"{'MISMATCH' if problems else 'ok' if checked else 'not checked'}")
            for problem in problems:
                cfg.out(f"  {problem}")
            if problems:
                break  # the next rounds would only repeat the first finding
        if cfg.keep:
            cfg.out(f"kept: model {root}, source {source}, target {target}, mysql {maria}")
    summary.seconds = time.perf_counter() - started
    cfg.out(f"summary: {summary.rounds} rounds, {summary.kills} kills, "
            f"{summary.mismatches} mismatches, {summary.seconds:.1f} s")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-every", type=int, default=1)
    parser.add_argument("--sinks", default=",".join(SINKS))
    parser.add_argument("--keep", action="store_true", help="keep the databases and model")
    args = parser.parse_args(argv)
    summary = chaos(Config(rows=args.rows, rounds=args.rounds, seed=args.seed,
                           check_every=max(1, args.check_every),
                           sinks=tuple(s for s in args.sinks.split(",") if s), keep=args.keep))
    return 1 if summary.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
