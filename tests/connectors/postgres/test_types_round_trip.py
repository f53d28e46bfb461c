"""Every common PostgreSQL column type, through ``ferry run``: ingested into the store and
delivered back into PostgreSQL, lands in a native column with equal values (against the
real server on 127.0.0.1:5432)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.postgres.source import PostgresSource
from dataferry.model.spec import Column, SourceDataset
from dataferry.model.spec import PostgresSource as SourceSpec
from tests.conftest import Result
from tests.connectors.pg_helpers import rows_of, temporary_database

# name, source type, declared type, delivered type (format_type), values (SQL literals)
TYPES = [
    ("j", "json", "json", "jsonb", ["'{\"a\": [1, 2.5, null], \"é\": \"x\"}'", "'[]'", "'\"s\"'"]),
    ("jb", "jsonb", "json", "jsonb", ["'{\"k\": {\"n\": true}}'", "'1e3'", "'null'"]),
    ("u", "uuid", "uuid", "uuid", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
                                   "'00000000-0000-0000-0000-000000000000'", "gen_random_uuid()"]),
    ("ta", "text[]", "list<string>", "text[]", ["'{a,NULL,\"b c\"}'", "'{}'", "'{\"\"}'"]),
    ("ia", "int4[]", "list<int32>", "integer[]", ["'{1,NULL,-2147483648}'", "'{}'", "'{7}'"]),
    ("n", "numeric", "string", "text", ["'-12345678901234567890.000000000001'", "'NaN'",
                                        "'-Infinity'"]),
    ("d", "numeric(12,2)", "decimal(12,2)", "numeric(12,2)", ["'-9999999999.99'", "'0.01'", "0"]),
    ("iv", "interval", "interval", "interval", ["'1 year 2 mons -3 days 04:05:06.5'",
                                                "'-1 sec'", "'0'"]),
    ("ivs", "interval", "string", "text", ["'-178000000 years -0.000001 sec'", "'1 day'",
                                           "'2 hours -1 min'"]),  # still fine as string
    ("iva", "interval[]", "list<interval>", "interval[]",
     ["'{\"1 mon -1 day\",NULL}'", "'{}'", "'{\"-2562047 hours -47 min -16.854775 sec\"}'"]),
    ("b", "bytea", "binary", "bytea", ["'\\x00ff10'", "''", "'\\x00'"]),
    ("ip", "inet", "string", "text", ["'10.1.2.3'", "'::1/128'", "'192.168.0.0/16'"]),
    ("e", "round_trip_mood", "string", "text", ["'sad'", "'happy'", "'ok'"]),
    ("t", "time", "time", "time without time zone", ["'23:59:59.999999'", "'00:00'", "'12:00:01'"]),
    ("ts", "timestamp", "timestamp", "timestamp without time zone",
     ["'1900-01-01 00:00:00.000001'", "'2262-04-11 23:47:16'", "'2024-02-29 12:00'"]),
    ("tz", "timestamptz", "timestamp_tz", "timestamp with time zone",
     ["'2024-06-01 08:00+05:30'", "'1970-01-01 00:00Z'", "now()"]),
    ("dt", "date", "date", "date", ["'0001-01-01'", "'9999-12-31'", "'2024-02-29'"]),
    ("s", "smallint", "int16", "smallint", ["-32768", "32767", "0"]),
    ("r", "real", "float32", "real", ["'3.4e38'", "'-1.5'", "'NaN'"]),
    ("v", "varchar(10)", "string(10)", "character varying(10)", ["'héllo'", "''", "'0123456789'"]),
    ("bo", "bool", "bool", "boolean", ["true", "false", "true"]),
]


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with temporary_database() as url:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("create type round_trip_mood as enum ('sad', 'ok', 'happy')")
            columns = ", ".join(f"{n} {native}" for n, native, *_ in TYPES)
            db.execute(f"create table every_type (id bigint primary key, {columns})")
            for row in range(3):
                values = ", ".join(values[row] for *_, values in TYPES)
                db.execute(f"insert into every_type values ({row + 1}, {values})")
            db.execute("insert into every_type (id) values (4)")  # every column null
        yield url


def _model(dsn: str) -> dict[str, str]:
    columns = "\n".join(f"          {n}: {{type: '{declared}'}}" for n, _, declared, *_ in TYPES)
    return {"teams/crm/crm.yaml": f"""\
team: crm
zone: eu
owners: [ada@acme.example]
sources:
  db:
    kind: postgres
    dsn: {dsn}
    datasets:
      every_type:
        table: public.every_type
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
{columns}
consumers:
  wh:
    sink: {{kind: postgres, dsn: "{dsn}", schema: wh}}
    datasets:
      - {{ref: crm.every_type, mode: replace}}
      - {{ref: crm.every_type, mode: merge, table: every_type_merged}}
"""}


@pytest.mark.parametrize("table", ["every_type", "every_type_merged"])
def test_every_type_comes_back_native_and_equal(
    dsn: str, table: str, model: Callable[..., Path], ferry: Callable[..., Result],
) -> None:
    root = model(_model(dsn))
    done = ferry("run", "crm.every_type", "crm.wh", "--model", root)
    assert done.code == 0, done
    with psycopg.connect(dsn, autocommit=True) as db:
        natives = dict(rows_of(db, "select attname::text, format_type(atttypid, atttypmod) "
                                   f"from pg_attribute where attrelid = 'wh.{table}'::regclass "
                                   "and attnum > 0 and not attisdropped"))
        assert natives == {"id": "bigint", **{n: back for n, _, _, back, _ in TYPES}}
        # Each value, read back as the source's type, equals the source's value.
        for name, native, _, back, _ in TYPES:
            source = f"s.{name}::jsonb" if native == "json" else f"s.{name}"
            target = f"t.{name}::{native}" if back == "text" else f"t.{name}"
            differ = rows_of(db, f"select s.id, {source}::text, {target}::text "
                                 f"from public.every_type s join wh.{table} t using (id) "
                                 f"where {source} is distinct from {target}")
            assert differ == [], name
        assert rows_of(db, f"select count(*) from wh.{table}") == [(4,)]


def _read(dsn: str, query: str | None, table: str | None, key: str = "int64") -> Any:
    source = PostgresSource("crm.db", SourceSpec(kind="postgres", dsn=dsn), Path("."))
    spec = SourceDataset(table=table, query=query, primary_key=["id"],
                         columns={"id": Column(type=key), "j": Column(type="json")})
    try:
        return source.read(ReadRequest("crm.t", spec, ["id", "j"]))
    finally:
        source.close()


def test_a_table_keyed_by_a_unique_constraint_tells_the_store(dsn: str) -> None:
    """The store skips its own uniqueness pass only when PostgreSQL guarantees the key."""
    assert _read(dsn, None, "public.every_type").unique_key
    assert not _read(dsn, "select id, j from every_type", None).unique_key
    # conform may round distinct keys into one float32: then the store checks
    assert not _read(dsn, None, "public.every_type", key="float32").unique_key
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("create table loose (id bigint, j json)")
        db.execute("create table partial (id bigint, j json)")
        db.execute("create unique index on partial (id) where id > 0")
    assert not _read(dsn, None, "loose").unique_key
    assert not _read(dsn, None, "partial").unique_key


def test_duplicate_keys_of_a_table_without_a_unique_constraint_are_refused(
    dsn: str, model: Callable[..., Path], ferry: Callable[..., Result],
) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("create table twice (id bigint, j json)")
        db.execute("""insert into twice values (1, '{}'), (1, '[]')""")
    files = {"teams/crm/crm.yaml": f"""\
team: crm
zone: eu
owners: [ada@acme.example]
sources:
  db:
    kind: postgres
    dsn: {dsn}
    datasets:
      twice:
        table: public.twice
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          j: {{type: json}}
"""}
    done = ferry("run", "crm.twice", "--model", model(files))
    assert done.code == 1
    assert "primary key (id) is not unique" in done.out + done.err
