"""``ferry discover`` on a large PostgreSQL schema, against reading the catalog alone.

Creates a database with ``--tables`` tables of 12 columns (keys, an indexed
``updated_at``, numeric, jsonb, arrays, an enum), then times:

  baseline: one query over ``pg_attribute`` + ``pg_index`` for the whole schema (the
  least any catalog reader must do: every column's type, nullability and the keys)
  ``discover()``: the team file, with each table described by ``PostgresSource.columns``
  (the connector's own mapping: one ``select * limit 0`` and its type lookups per table)

and prints both and their ratio. The database is dropped at the end.

    python bench/discover.py [--tables N] [--dsn postgresql://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

import psycopg

from dataferry.discover import discover

_BASELINE = """
select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       coalesce(i.indisprimary, false)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
left join pg_index i on i.indrelid = c.oid and i.indisprimary and a.attnum = any(i.indkey)
where n.nspname = 'public' and c.relkind = 'r'
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=300)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    name = f"ferry_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{args.dsn}/postgres", autocommit=True) as admin:
        admin.execute(f"create database {name}")  # type: ignore[arg-type]
    try:
        dsn = f"{args.dsn}/{name}"
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("create type status as enum ('new', 'paid', 'shipped')")
            for n in range(args.tables):
                db.execute(  # type: ignore[arg-type]
                    f"create table t{n} (id bigint primary key, name varchar(100) not null, "
                    "amount numeric(12,2), ratio double precision, tags text[], doc jsonb, "
                    "ref uuid, state status, born date, flag boolean, created_at timestamptz, "
                    f"updated_at timestamptz not null); create index on t{n} (updated_at)")
            started = time.perf_counter()
            rows = db.execute(_BASELINE).fetchall()  # type: ignore[arg-type]
            baseline = time.perf_counter() - started
        started = time.perf_counter()
        found = discover(dsn, Path("."), owner="bench@example.com")
        elapsed = time.perf_counter() - started
        assert found.datasets == args.tables and len(rows) == 12 * args.tables
        print(f"{args.tables} tables, {12 * args.tables} columns, "
              f"{len(found.text.splitlines())} lines of team file")
        print(f"{'baseline: one catalog query':<44} {baseline * 1000:8.1f} ms")
        print(f"{'ferry discover':<44} {elapsed * 1000:8.1f} ms "
              f"({elapsed / args.tables * 1000:.2f} ms per table)")
        print(f"{'ratio':<44} {elapsed / baseline:8.1f} x")
    finally:
        with psycopg.connect(f"{args.dsn}/postgres", autocommit=True) as admin:
            admin.execute(f"drop database if exists {name} with (force)")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
