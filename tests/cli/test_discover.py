"""``ferry discover`` against real databases and files: the team file it prints passes
``ferry check`` unchanged in a model made by ``ferry init``, and ``ferry run`` of a
discovered dataset ingests its rows (the mapped types read end to end)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pymysql
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dataferry.connectors.parquet.types import file_schema
from dataferry.discover.sample import text_type
from dataferry.discover.target import name_of
from dataferry.discover.teamfile import scalar
from dataferry.model.types import Primitive, parse_type
from dataferry.model.yamlfile import parse_yaml
from tests.conftest import Result, require_service
from tests.connectors.pg_helpers import SECRET, free_port, temporary_database

Ferry = Callable[..., Result]
OWNER = "data@example.com"


def ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


@pytest.fixture
def fresh(tmp_path: Path, ferry: Ferry) -> Path:
    """A model as ``ferry init`` makes it."""
    root = tmp_path / "model"
    ok(ferry("init", root))
    return root


def adopt(root: Path, text: str) -> dict[str, Any]:
    """Save a discovered team file where its team's files go; its parsed content."""
    document = yaml.safe_load(text)
    team = document["team"]
    (root / "teams" / team).mkdir(parents=True, exist_ok=True)
    (root / "teams" / team / f"{team}.yaml").write_text(text, encoding="utf-8")
    return dict(document)


def datasets(document: dict[str, Any]) -> dict[str, Any]:
    (source,) = document["sources"].values()
    return dict(source["datasets"])


def types(dataset: dict[str, Any]) -> dict[str, str]:
    return {name: column["type"] for name, column in dataset["columns"].items()}


def check_and_run(ferry: Ferry, root: Path, *refs: str,
                  left_out: tuple[str, ...] = ()) -> dict[str, int]:
    """``ferry check`` passes, ``--connect`` finds the live tables as declared (the same
    mapping as the ingest); ``ferry run REFS`` ingests; rows of each dataset."""
    ok(ferry("check", "--model", root))
    connected = json.loads(ok(ferry("check", "--connect", "--json", "--model", root)).out)
    found = [f["message"] for f in connected["findings"]]
    assert len(found) == len(left_out), found
    assert all(f"new column {name!r}" in message for name, message in zip(left_out, found, strict=True))
    ok(ferry("run", *refs, "--model", root))
    return {ref: json.loads(ok(ferry("show", ref, "--json", "--model", root)).out)["rows_total"]
            for ref in refs}


def block(text: str, dataset: str) -> str:
    """The lines of one dataset in the team file (with its comments)."""
    lines = text.splitlines()
    start = lines.index(f"      {dataset}:") if f"      {dataset}:" in lines else next(
        i for i, line in enumerate(lines) if line.startswith(f"      {dataset}:"))
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("      ") and not lines[i].startswith("       ")),
               len(lines))
    return "\n".join(lines[start:end])


# --- PostgreSQL ------------------------------------------------------------------------

PG_DDL = """
create type mood as enum ('sad', 'ok', 'happy');
create type address as (street text, zip varchar(10));
create table customers (
  id bigint primary key, email varchar(200) not null unique, name text, balance numeric(12,2),
  score numeric, tags text[], ints int[], profile jsonb, meta json, ext_id uuid, mood mood,
  active boolean, born date, wakes time, seen timestamp, ip inet, span interval,
  small smallint, ratio real, amount double precision, photo bytea,
  created_at timestamptz, updated_at timestamptz not null);
create index customers_updated on customers (updated_at);
create table events (kind text, at timestamptz, payload jsonb, history jsonb[], fee money,
  during int4range, place address);
create table "Order Items" ("Item ID" int not null primary key, "2nd note" text, qty int);
create view active_customers as select id, email from customers where active;
insert into customers values
  (1, 'a@example.com', 'Ada', 12.50, 3.14159, '{vip,b2b}', '{1,2}', '{"k": [1, 2]}', '[1]',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'happy', true, '1990-05-01', '07:30', '2024-01-01 10:00',
   '10.0.0.1', '1 day 2 hours', 3, 1.5, 2.25, '\\xdead', now(), now()),
  (2, 'b@example.com', null, null, null, null, null, null, null, null, null, null, null, null,
   null, null, null, null, null, null, null, null, now());
insert into events values ('click', now(), '{}', array['{"a": 1}'::jsonb, '[2]'], 1.25,
  '[1,5)', ('Main St', '0012')), ('view', now(), null, null, null, null, null);
insert into "Order Items" values (1, 'x', 2), (2, null, 5);
create schema "Sales";
create table "Sales"."Customers" ("Id" int primary key, "updatedAt" timestamp(0), "order" text,
  prices numeric(5,2)[], codes varchar(3)[]);
create index on "Sales"."Customers" ("updatedAt");
insert into "Sales"."Customers" values (1, now(), 'x', '{1.50}', '{NZD}');
"""


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    with temporary_database() as dsn:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(PG_DDL)  # type: ignore[arg-type]
        yield dsn


def pg_with_password(dsn: str) -> str:
    return dsn.replace("postgres@", f"postgres:{SECRET.replace('!', '%21')}@")


def test_postgres_team_file_checks_and_ingests(pg: str, fresh: Path, ferry: Ferry,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = ok(ferry("discover", pg_with_password(pg), "--team", "crm", "--owner", OWNER,
                   "--model", fresh))
    assert SECRET not in out.out + out.err and "s3cret" not in out.out + out.err
    document = adopt(fresh, out.out)
    (source_name,) = document["sources"]
    variable = f"{source_name.upper()}_PASSWORD"
    assert document["sources"][source_name]["password"] == f"${{env:{variable}}}"
    assert f"set {variable}" in out.err
    assert out.out.startswith(f"# Generated by ferry discover from postgresql://postgres@"
                              f"127.0.0.1:5432/{pg.rsplit('/', 1)[1]} at ")
    found = datasets(document)
    assert set(found) == {"customers", "events", "order_items", "active_customers"}
    customers = found["customers"]
    assert customers["table"] == "public.customers" and customers["primary_key"] == ["id"]
    assert types(customers) == {
        "id": "int64", "email": "string(200)", "name": "string", "balance": "decimal(12,2)",
        "score": "string", "tags": "list<string>", "ints": "list<int32>", "profile": "json",
        "meta": "json", "ext_id": "uuid", "mood": "string", "active": "bool", "born": "date",
        "wakes": "time", "seen": "timestamp", "ip": "string", "span": "interval",
        "small": "int16", "ratio": "float32", "amount": "float64", "photo": "binary",
        "created_at": "timestamp_tz", "updated_at": "timestamp_tz"}
    assert customers["columns"]["id"]["nullable"] is False
    assert customers["columns"]["updated_at"]["nullable"] is False
    assert "nullable" not in customers["columns"]["name"]
    text = block(out.out, "customers")
    assert "# cursor: updated_at   (indexed timestamp_tz; uncomment" in text
    assert "#   - accepted_values: {column: mood, values: [sad, ok, happy]}" in text
    assert "score:" in text and "numeric without a precision" in text
    assert types(found["events"]) == {"kind": "string", "at": "timestamp_tz", "payload": "json",
                                      "history": "list<json>", "fee": "string",
                                      "during": "string", "place": "json"}
    events = block(out.out, "events")
    assert "during:" in events and "int4range is read as PostgreSQL's text of it" in events
    assert "# no primary key: add primary_key" in events
    assert "# cursor:" not in events
    items = found["order_items"]
    assert "table" not in items and '"Item ID" as "Item_ID"' in items["query"]
    assert items["primary_key"] == ["Item_ID"] and "_2nd_note" in items["columns"]
    assert "  active_customers:   # a view" in out.out

    monkeypatch.setenv(variable, SECRET)
    rows = check_and_run(ferry, fresh, "crm.customers", "crm.order_items", "crm.events",
                         "crm.active_customers")
    assert rows == {"crm.customers": 2, "crm.order_items": 2, "crm.events": 2,
                    "crm.active_customers": 1}
    shown = json.loads(ok(ferry("show", "crm.customers", "--json", "--model", fresh)).out)
    first = next(r for r in shown["rows"] if r["id"] == 1)
    assert first["balance"] == "12.50" and first["ext_id"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert first["tags"] == ["vip", "b2b"] and first["mood"] == "happy"


def test_postgres_tables_schema_and_an_uncommented_cursor(pg: str, fresh: Path,
                                                          ferry: Ferry) -> None:
    """--tables picks tables; the suggested cursor, uncommented, runs incrementally."""
    out = ok(ferry("discover", pg, "--tables", "customers", "--schema", "public",
                   "--owner", OWNER, "--model", fresh))
    text = out.out.replace("        # capture: incremental\n", "        capture: incremental\n")
    text = text.replace("        # cursor: updated_at ", "        cursor: updated_at #")
    document = adopt(fresh, text)
    assert document["team"] == name_of(pg.rsplit("/", 1)[1], "team")
    assert list(datasets(document)) == ["customers"]
    ref = f"{document['team']}.customers"
    assert check_and_run(ferry, fresh, ref) == {ref: 2}
    ok(ferry("run", ref, "--model", fresh))


def test_postgres_schema_and_names_that_need_quoting(pg: str, fresh: Path,
                                                    ferry: Ferry) -> None:
    out = ok(ferry("discover", pg, "--schema", "Sales", "--owner", OWNER, "--model", fresh,
                   "--out", fresh / "teams" / "shop" / "shop.yaml"))
    assert "belong in teams/sales/" in out.err  # the team is named after the schema
    (fresh / "teams" / "shop").rename(fresh / "teams" / "sales")
    text = (fresh / "teams" / "sales" / "shop.yaml").read_text()
    assert "        table: '\"Sales\".\"Customers\"'\n" in text
    assert "# cursor: updatedAt   (indexed timestamp;" in text
    customers = datasets(yaml.safe_load(text))["customers"]
    assert customers["primary_key"] == ["Id"]
    assert types(customers) == {"Id": "int32", "updatedAt": "timestamp", "order": "string",
                                "prices": "list<decimal(5,2)>", "codes": "list<string(3)>"}
    assert check_and_run(ferry, fresh, "sales.customers") == {"sales.customers": 1}


def test_postgres_keyword_dsn_with_a_password(pg: str, ferry: Ferry) -> None:
    database = pg.rsplit("/", 1)[1]
    out = ok(ferry("discover", f"host=127.0.0.1 port=5432 user=postgres password={SECRET} "
                               f"dbname={database}", "--tables", "events", "--owner", OWNER))
    source = next(iter(yaml.safe_load(out.out)["sources"].values()))
    assert SECRET not in out.out + out.err and "password=" not in source["dsn"]
    assert source["password"].startswith("${env:") and "dbname=" + database in source["dsn"]


def test_postgres_unknown_table_and_unreachable_server(pg: str, ferry: Ferry) -> None:
    missing = ferry("discover", pg, "--tables", "customers,nope")
    assert missing.code == 1 and "no table 'nope'" in missing.err and "customers" in missing.err
    down = ferry("discover", f"postgresql://reader:{SECRET}@127.0.0.1:{free_port()}/shop")
    assert down.code == 1 and down.out == ""
    assert len(down.err.strip().splitlines()) == 1 and "cannot connect" in down.err
    assert SECRET not in down.err and "reader@127.0.0.1" in down.err


# --- MariaDB ---------------------------------------------------------------------------

MYSQL_DDL = [
    "CREATE TABLE orders (id INT UNSIGNED NOT NULL PRIMARY KEY, customer VARCHAR(100) NOT NULL,"
    " amount DECIMAL(10,2), status ENUM('new','paid','it''s'), paid TINYINT(1), doc JSON,"
    " placed DATETIME(6), note TEXT, modified_at TIMESTAMP(6) NOT NULL DEFAULT"
    " CURRENT_TIMESTAMP(6), KEY (modified_at))",
    "CREATE TABLE `odd-name` (`a b` INT, c VARCHAR(5), UNIQUE KEY (c))",
    "INSERT INTO orders (id, customer, amount, status, paid, doc, placed, note) VALUES"
    " (1, 'Ada', 12.50, 'paid', 1, '{\"a\": 1}', '2024-01-02 03:04:05', 'hi'),"
    " (2, 'Bob', NULL, 'it''s', NULL, NULL, NULL, NULL)",
    "INSERT INTO `odd-name` VALUES (1, 'x'), (2, NULL)",
]


@pytest.fixture(scope="module")
def mariadb() -> Iterator[str]:
    require_service("mariadb")
    name = f"ferry_test_{uuid.uuid4().hex[:10]}"
    admin = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
            cursor.execute(f"USE {name}")
            for statement in MYSQL_DDL:
                cursor.execute(statement)
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def test_mariadb_team_file_checks_and_ingests(mariadb: str, fresh: Path, ferry: Ferry) -> None:
    out = ok(ferry("discover", mariadb, "--team", "sales", "--owner", OWNER, "--model", fresh))
    found = datasets(adopt(fresh, out.out))
    assert set(found) == {"orders", "odd_name"}
    assert types(found["orders"]) == {
        "id": "uint32", "customer": "string(100)", "amount": "decimal(10,2)",
        "status": "string", "paid": "int8", "doc": "json", "placed": "timestamp",
        "note": "string", "modified_at": "timestamp_tz"}
    orders = block(out.out, "orders")
    assert "# cursor: modified_at   (indexed timestamp_tz" in orders
    assert "values: [new, paid, 'it''s']" in orders and "declare bool" in orders
    odd = found["odd_name"]
    assert "`a b` as `a_b`" in odd["query"] and list(odd["columns"]) == ["a_b", "c"]
    assert "# primary_key: [c]" not in block(out.out, "odd_name")  # c may be NULL
    assert check_and_run(ferry, fresh, "sales.orders", "sales.odd_name") == {
        "sales.orders": 2, "sales.odd_name": 2}


# --- SQLite and DuckDB -----------------------------------------------------------------


def test_sqlite_text_columns_get_the_type_of_their_values(tmp_path: Path, fresh: Path,
                                                          ferry: Ferry) -> None:
    path = tmp_path / "Shop Data.db"
    with sqlite3.connect(path) as db:
        db.executescript("""
            create table customers (id integer primary key, name text, balance text,
              tags text, born date, joined text, updated_at text not null, zip text,
              ratio real, flag boolean, price decimal(8,3), anything, qty numeric, w);
            create index customers_updated on customers (updated_at);
            create table log (line text);
            create table "a.b" (id integer primary key, "x y" text);
            insert into "a.b" values (7, 'q');
            insert into customers values
              (1, 'Ada', '12.50', '["a"]', '1990-01-01', '2024-01-01 10:00:00',
               '2024-01-01T10:00:00+00:00', '0012', 0.5, 1, '1.250', 'x', 3, 1.5),
              (2, 'Bob', '0.5', '{"b": 1}', null, '2024-02-01 11:30:00',
               '2024-02-01T11:00:00+00:00', '9999', null, 0, null, 5, 4, 2);
            insert into log values ('started');
        """)
    out = ok(ferry("discover", path, "--owner", OWNER, "--model", fresh))
    document = adopt(fresh, out.out)
    assert document["team"] == "shop_data"
    found = datasets(document)
    assert types(found["customers"]) == {
        "id": "int64", "name": "string", "balance": "decimal(18,2)", "tags": "json",
        "born": "date", "joined": "timestamp", "updated_at": "timestamp_tz", "zip": "string",
        "ratio": "float64", "flag": "bool", "price": "decimal(8,3)", "anything": "string",
        "qty": "int64", "w": "float64"}
    assert "# cursor: updated_at   (indexed timestamp_tz" in block(out.out, "customers")
    assert document["sources"]["shop_data"]["path"] == str(path)
    assert found["a_b"]["query"].strip() == 'select "id", "x y" as "x_y" from "a.b"'
    as_json = json.loads(ok(ferry("discover", path, "--owner", OWNER, "--model", fresh,
                                  "--json")).out)
    assert as_json["model"] == parse_yaml(as_json["file"]).value
    assert as_json["model"]["sources"] == document["sources"]
    assert as_json["suggested"] == {"customers": {
        "cursor": "updated_at", "why": "indexed timestamp_tz"}}
    assert ferry("discover", path, "--json", "--out", tmp_path / "x.yaml").code == 2
    rows = check_and_run(ferry, fresh, "shop_data.customers", "shop_data.log", "shop_data.a_b")
    assert rows == {"shop_data.customers": 2, "shop_data.log": 1, "shop_data.a_b": 1}


def test_yaml_1_1_booleans_stay_words(tmp_path: Path, ferry: Ferry) -> None:
    """A zone named no (Norway) and columns named yes/no/on are names, as ferry reads
    YAML (1.2), in the team file and in --json, not the booleans YAML 1.1 makes of them."""
    root = tmp_path / "model"
    root.mkdir()
    (root / "ferry.yaml").write_text("ecosystem: nordic\nzones:\n  no: {}\n", encoding="utf-8")
    with sqlite3.connect(root / "votes.db") as db:
        db.execute("create table votes (id integer primary key, yes integer, no integer, "
                   "\"on\" text)")
    out = json.loads(ok(ferry("discover", root / "votes.db", "--team", "votes", "--owner",
                              OWNER, "--model", root, "--json")).out)
    assert out["model"]["zone"] == "no"
    columns = out["model"]["sources"]["votes"]["datasets"]["votes"]["columns"]
    assert list(columns) == ["id", "yes", "no", "on"]
    adopt(root, out["file"])
    assert ok(ferry("check", "--model", root))


def test_sqlite_inside_the_model_is_written_relative(fresh: Path, ferry: Ferry) -> None:
    (fresh / "data").mkdir()
    with sqlite3.connect(fresh / "data" / "app.sqlite") as db:
        db.execute("create table t (id integer primary key, v text)")
        db.execute("insert into t values (1, 'a')")
    out = ok(ferry("discover", f"sqlite:///{fresh / 'data' / 'app.sqlite'}", "--team", "app",
                   "--owner", OWNER, "--model", fresh))
    assert "    path: data/app.sqlite\n" in out.out
    adopt(fresh, out.out)
    assert check_and_run(ferry, fresh, "app.t") == {"app.t": 1}


def test_without_a_model_paths_are_absolute(tmp_path: Path, ferry: Ferry,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative to what? Without a model (no ferry.yaml here or above) the path is absolute."""
    monkeypatch.chdir(tmp_path)
    with sqlite3.connect("app.db") as db:
        db.execute("create table t (id integer primary key)")
    out = ok(ferry("discover", "app.db", "--owner", OWNER))
    assert f"    path: {tmp_path / 'app.db'}\n" in out.out
    assert "zone: main\n" in out.out


def test_duckdb_team_file_checks_and_ingests(tmp_path: Path, fresh: Path, ferry: Ferry) -> None:
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as db:
        db.execute("""
            create type mood as enum ('sad', 'happy');
            create table facts (id bigint primary key, u uuid, j json, h hugeint, m mood,
              l int[], s struct(a int, b varchar), mp map(varchar, int), d decimal(10,2),
              ts timestamp, tz timestamptz, i interval, small utinyint, last_modified timestamp,
              odd struct("a b" int, c varchar));
            insert into facts values (1, gen_random_uuid(), '{"a": 1}',
              170141183460469231731687303715884105727, 'happy', [1, 2], {'a': 1, 'b': 'x'},
              map {'k': 1}, 12.5, '2024-01-01 10:00', '2024-01-01 10:00+00', interval 1 day,
              200, '2024-01-01', {'a b': 1, 'c': 'q'});
            create table bare (x integer, y varchar);
            insert into bare values (1, 'a'), (2, 'b');
        """)
    out = ok(ferry("discover", path, "--owner", OWNER, "--model", fresh))
    found = datasets(adopt(fresh, out.out))
    assert types(found["facts"]) == {
        "id": "int64", "u": "uuid", "j": "json", "h": "decimal(39,0)", "m": "string",
        "l": "list<int32>", "s": "struct<a:int32, b:string>", "mp": "map<string,int32>",
        "d": "decimal(10,2)", "ts": "timestamp", "tz": "timestamp_tz", "i": "interval",
        "small": "uint8", "last_modified": "timestamp", "odd": "json"}
    facts = block(out.out, "facts")
    assert "# cursor: last_modified   (timestamp, not indexed" in facts
    assert "values: [sad, happy]" in facts
    assert "# no primary key" in block(out.out, "bare")
    rows = check_and_run(ferry, fresh, "warehouse.facts", "warehouse.bare")
    assert rows == {"warehouse.facts": 1, "warehouse.bare": 2}
    with duckdb.connect(str(path)) as db:
        db.execute('create schema "Raw Data"; create table "Raw Data"."My.Table" ('
                   '"Col A" int, "select" varchar, id int primary key); '
                   'insert into "Raw Data"."My.Table" values (1, \'x\', 1)')
    raw = ok(ferry("discover", path, "--schema", "Raw Data", "--owner", OWNER,
                   "--model", fresh))
    table = datasets(adopt(fresh, raw.out))["my_table"]
    assert table["query"].strip() == ('select "Col A" as "Col_A", "select", "id" '
                                      'from "Raw Data"."My.Table"')
    assert list(table["columns"]) == ["Col_A", "select", "id"]
    assert check_and_run(ferry, fresh, "raw_data.my_table") == {"raw_data.my_table": 1}
    shown = json.loads(ok(ferry("show", "warehouse.facts", "--json", "--model", fresh)).out)
    assert shown["rows"][0]["h"] == "170141183460469231731687303715884105727"
    assert json.loads(shown["rows"][0]["odd"]) == {"a b": 1, "c": "q"}
    assert shown["rows"][0]["i"] == "P1D"  # DuckDB's INTERVAL as ISO 8601 text


# --- files -----------------------------------------------------------------------------


def test_parquet_glob(fresh: Path, ferry: Ferry) -> None:
    folder = fresh / "data" / "sensor readings"
    folder.mkdir(parents=True)
    for day in (1, 2):
        pq.write_table(pa.table({
            "sensor": pa.array(["a", "b"]),
            "value": pa.array([1.5, 2.5]),
            "at": pa.array([1, 2], pa.timestamp("ms", tz="UTC")),
            "seen": pa.array([1000, 2000], pa.timestamp("ns")),
            "tags": pa.array([["x"], []], pa.list_(pa.string())),
            "price": pa.array([1, 2], pa.decimal128(9, 2)),
        }), folder / f"day{day}.parquet")
    out = ok(ferry("discover", str(folder / "*.parquet"), "--owner", OWNER, "--model", fresh))
    document = adopt(fresh, out.out)
    assert document["team"] == "sensor_readings"
    assert document["sources"]["sensor_readings"] == {
        "kind": "files", "path": "data/sensor readings/*.parquet",
        "datasets": document["sources"]["sensor_readings"]["datasets"]}
    (dataset,) = datasets(document).values()
    assert types(dataset) == {"sensor": "string", "value": "float64", "at": "timestamp_tz",
                              "seen": "timestamp", "tags": "list<string>",
                              "price": "decimal(9,2)"}
    assert "{type: timestamp}   # nanoseconds: dataferry keeps microseconds" in out.out
    assert "# capture: incremental   (uncomment to read only new or changed files)" in out.out
    assert check_and_run(ferry, fresh, "sensor_readings.sensor_readings") == {
        "sensor_readings.sensor_readings": 4}


def test_parquet_written_by_a_parquet_sink_keeps_its_declared_types(
        fresh: Path, ferry: Ferry) -> None:
    """Files of another ecosystem's parquet sink name each column's type in its metadata."""
    declared = [("id", "int64", False), ("ref", "uuid", True), ("doc", "json", True),
                ("code", "string(3)", True), ("wide", "decimal(50,2)", True),
                ("half", "float16", True), ("n", "uint64", True)]
    columns = [(name, parse_type(t), nullable) for name, t, nullable in declared]
    table = pa.Table.from_arrays([
        pa.array([1, 2]), pa.array(["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None]),
        pa.array(['{"a": 1}', None]), pa.array(["NZD", "EUR"]),
        pa.array(["123456789012345678901234567890123456789012.50", None]),
        pa.array([0.5, None], pa.float32()), pa.array([2**64 - 1, 0], pa.uint64()),
    ], schema=file_schema(columns))
    (fresh / "in").mkdir()
    pq.write_table(table, fresh / "in" / "part-1.parquet")
    out = ok(ferry("discover", str(fresh / "in" / "*.parquet"), "--team", "peer",
                   "--owner", OWNER, "--model", fresh))
    (dataset,) = datasets(adopt(fresh, out.out)).values()
    assert types(dataset) == {name: t for name, t, _ in declared}
    assert dataset["columns"]["id"]["nullable"] is False
    assert check_and_run(ferry, fresh, "peer.in") == {"peer.in": 2}


def test_csv_glob_types_from_the_values(fresh: Path, ferry: Ferry,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative glob is relative to the current directory, as in the shell."""
    monkeypatch.chdir(fresh)
    folder = fresh / "exports"
    folder.mkdir()
    (folder / "a.csv").write_text(
        "id,zip,price,day,at,ok,note,order id\n"
        "1,0012,1.5,2024-01-01,2024-01-01 10:00:00,true,NULL,7\n"
        "2,9999,2,2024-01-02,2024-01-02 11:00:00,false,,8\n", encoding="utf-8")
    out = ok(ferry("discover", "exports/*.csv", "--team", "ops", "--owner", OWNER,
                   "--model", fresh))
    (dataset,) = datasets(adopt(fresh, out.out)).values()
    assert types(dataset) == {"id": "int64", "zip": "string", "price": "float64",
                              "day": "date", "at": "timestamp", "ok": "bool", "note": "string"}
    assert "# column 'order id' (text) is left out" in out.out
    assert check_and_run(ferry, fresh, "ops.exports", left_out=("order id",)) == {
        "ops.exports": 2}


def test_json_lines_glob(fresh: Path, ferry: Ferry) -> None:
    folder = fresh / "clicks"
    folder.mkdir()
    records = [{"id": 1, "url": "/a", "score": 0.5, "tags": ["x"], "where": {"lat": 1.5},
                "headers": {"User-Agent": "curl"}},
               {"id": 2, "url": "/b", "score": 1, "tags": [], "where": None, "headers": {}}]
    for n, record in enumerate(records):
        (folder / f"{n}.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    out = ok(ferry("discover", str(folder / "*.jsonl"), "--team", "web", "--owner", OWNER,
                   "--model", fresh))
    (dataset,) = datasets(adopt(fresh, out.out)).values()
    assert types(dataset) == {"id": "int64", "url": "string", "score": "float64",
                              "tags": "list<string>", "where": "struct<lat:float64>",
                              "headers": "json"}
    assert check_and_run(ferry, fresh, "web.clicks") == {"web.clicks": 2}
    shown = json.loads(ok(ferry("show", "web.clicks", "--json", "--model", fresh)).out)
    assert {r["id"]: r["headers"] for r in shown["rows"]}[1] == '{"User-Agent":"curl"}'


def test_what_cannot_be_discovered(tmp_path: Path, ferry: Ferry) -> None:
    assert ferry("discover", "oracle://db/x").code == 2
    assert ferry("discover", tmp_path / "missing.db").code == 2
    (tmp_path / "notes.txt").write_text("hello")
    assert ferry("discover", tmp_path / "notes.txt").code == 2
    nothing = ferry("discover", str(tmp_path / "*.parquet"))
    assert nothing.code == 1 and "no file matches" in nothing.err
    assert ferry("discover", "x.db", "--team", "Not A Name").code == 2
    with sqlite3.connect(tmp_path / "empty.db") as db:
        db.execute("create table t (x int)")
    assert ferry("discover", tmp_path / "empty.db", "--schema", "main").code == 2
    empty = ferry("discover", tmp_path / "empty.db", "--tables", "")
    assert empty.code == 1 and "has no tables" in empty.err


# --- names and YAML --------------------------------------------------------------------


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
def test_scalars_read_back_as_the_same_string(text: str) -> None:
    assert yaml.safe_load(f"key: {scalar(text)}") == {"key": text}


@given(st.text(max_size=80))
def test_made_names_are_model_names(text: str) -> None:
    name = name_of(text, "t")
    assert name[0].isalpha() and len(name) <= 63
    assert all(c.isascii() and (c.islower() or c.isdigit() or c == "_") for c in name)


@given(st.lists(st.datetimes(timezones=st.none() | st.just(UTC)), min_size=1, max_size=20),
       st.sampled_from(["T", " "]))
def test_sampled_timestamps_are_found(moments: list[datetime], separator: str) -> None:
    texts = [m.isoformat(sep=separator) for m in moments]
    zoned = {m.tzinfo is not None for m in moments}
    expected = None if zoned == {True, False} else Primitive(
        "timestamp_tz" if True in zoned else "timestamp")
    assert text_type(texts) == expected


@given(st.lists(st.decimals(allow_nan=False, allow_infinity=False, places=3,
                            min_value=-10**12, max_value=10**12), min_size=1, max_size=20))
def test_sampled_decimals_fit_their_type(values: list[Any]) -> None:
    texts = [f"{v:.3f}" for v in values]
    found = text_type(texts)
    assert found is not None
    assert parse_type(f"decimal({found.precision},{found.scale})") == found  # type: ignore[attr-defined]
    for text in texts:
        whole = len(text.lstrip("-").split(".")[0].lstrip("0") or "0")
        assert whole <= found.precision - found.scale  # type: ignore[attr-defined]
