"""Transformers: SQL (inline, sql_file) and Python on DuckDB, lineage, verified inputs,
clear errors when the output disagrees with the declared columns."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dataferry.engine.context import RunContext
from dataferry.engine.deliver import mask_key
from dataferry.engine.transform import TransformError, transform
from dataferry.model.load import load_model
from tests.conftest import write_files

TEAM = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      orders:
        table: orders
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          customer: {type: int64}
          amount: {type: decimal(12,2)}
      customers:
        table: customers
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          name: {type: string}
transformers:
  revenue:
    inputs: [shop.orders, shop.customers]
    sql: |
      select c.name, sum(o.amount) as total, count(*) as orders
      from orders o join customers c on c.id = o.customer group by c.name
    columns: {name: string, total: decimal(18,2), orders: int64}
    primary_key: [name]
  big:
    inputs: [shop.orders]
    sql_file: sql/big.sql
    columns: {id: int64, amount: decimal(12,2)}
  scored:
    inputs: [shop.orders]
    python: scoring:score
    columns: {id: int64, score: float64}
"""

SCORING = """\
import pyarrow as pa
import pyarrow.compute as pc


def score(orders: pa.Table) -> pa.Table:
    amount = pc.cast(orders["amount"], pa.float64())
    return pa.table({"id": orders["id"], "score": pc.divide(amount, 100.0)})
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": TEAM,
        "teams/shop/sql/big.sql": "select id, amount from orders where amount >= 100\n",
        "teams/shop/scoring.py": SCORING,
    })
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("create table orders (id integer primary key, customer integer, amount text)")
        db.execute("create table customers (id integer primary key, name text)")
        db.executemany("insert into orders values (?, ?, ?)",
                       [(i, i % 3, f"{i * 10}.00") for i in range(1, 21)])
        db.executemany("insert into customers values (?, ?)",
                       [(0, "ada"), (1, "bob"), (2, "cy")])
    db.close()
    return root


def rows(root: Path, ref: str) -> list[dict[str, Any]]:
    context = RunContext.from_loaded(load_model(root))
    dataset = context.store.dataset(ref)
    return dataset.reader(dataset.resolve(None)).read_all().to_pylist()


def statuses(out: str) -> dict[str, str]:
    return {r["job"]: r["status"] for r in json.loads(out)}


def test_sql_sql_file_and_python_transformers(root: Path, ferry: Callable[..., Any]) -> None:
    first = ferry("run", "shop.revenue", "shop.big", "shop.scored", "--model", root, "--json")
    assert first.code == 0, first
    assert {k: v for k, v in statuses(first.out).items() if k.startswith("transform")} == {
        "transform:shop.revenue": "succeeded", "transform:shop.big": "succeeded",
        "transform:shop.scored": "succeeded"}
    revenue = {r["name"]: r["orders"] for r in rows(root, "shop.revenue")}
    assert revenue == {"ada": 6, "bob": 7, "cy": 7}
    assert sorted(r["id"] for r in rows(root, "shop.big")) == list(range(10, 21))
    assert {r["id"]: r["score"] for r in rows(root, "shop.scored")}[7] == pytest.approx(0.7)
    log = json.loads(ferry("log", "shop.revenue", "--model", root, "--json").out)
    assert {(i["ref"], i["version"]) for i in log[0]["lineage"]} == {
        ("shop.orders", 1), ("shop.customers", 1)}
    again = ferry("run", "shop.revenue", "--model", root, "--json")
    assert statuses(again.out)["transform:shop.revenue"] == "unchanged"


def test_a_new_input_version_recomputes_and_lineage_follows(
        root: Path, ferry: Callable[..., Any]) -> None:
    assert ferry("run", "shop.revenue", "--model", root).code == 0
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("insert into orders values (21, 0, '5.00')")
    db.close()
    assert ferry("run", "shop.revenue", "--model", root).code == 0
    log = json.loads(ferry("log", "shop.revenue", "--model", root, "--json").out)
    assert [e["version"] for e in log] == [2, 1]
    assert {(i["ref"], i["version"]) for i in log[0]["lineage"]} == {
        ("shop.orders", 2), ("shop.customers", 1)}
    assert {r["name"]: r["total"] for r in rows(root, "shop.revenue")}["ada"] == Decimal("635.00")


def test_an_altered_input_is_not_read(root: Path, ferry: Callable[..., Any]) -> None:
    assert ferry("run", "shop.orders", "--model", root).code == 0
    part = next((root / ".ferry" / "store" / "shop" / "orders").glob("part-*.parquet"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    done = ferry("run", "shop.big", "--model", root)
    assert done.code == 1
    assert "shop.orders version 1 does not verify" in done.err
    assert "content does not match its hash" in done.err
    assert not (root / ".ferry" / "store" / "shop" / "big" / "_sig" / "m").exists()


def test_output_that_disagrees_with_the_declared_columns_names_the_column(
        root: Path, ferry: Callable[..., Any]) -> None:
    model = root / "teams" / "shop" / "shop.yaml"
    original = model.read_text()
    # Text where a decimal is declared: ferry check finds it, so no run starts.
    model.write_text(original.replace(
        "select id, amount from orders", "select id, 'lots' as amount from orders"
    ).replace("sql_file: sql/big.sql", "sql: select id, 'lots' as amount from orders"))
    done = ferry("run", "shop.big", "--model", root)
    assert done.code != 0
    assert "schema-mismatch" in done.err and "'amount'" in done.err
    # Values too large for the declared decimal(12,2): only the run can tell.
    large = "select id, cast(amount * 1e12 as decimal(38,2)) as amount from orders"
    model.write_text(original.replace("select id, amount from orders", large)
                     .replace("sql_file: sql/big.sql", f"sql: {large}"))
    done = ferry("run", "shop.big", "--model", root)
    assert done.code == 1
    assert "transform:shop.big failed" in done.err
    assert "amount" in done.err and "does not match its declared columns" in done.err


def test_a_failing_check_blocks_the_version_and_consumers_keep_the_last_good_one(
        root: Path, ferry: Callable[..., Any]) -> None:
    model = root / "teams" / "shop" / "shop.yaml"
    model.write_text(model.read_text().replace(
        "          amount: {type: decimal(12,2)}\n",
        "          amount: {type: decimal(12,2)}\n        checks:\n"
        "          - range: {column: amount, min: 0}\n          - not_null: [customer]\n",
        1) + """consumers:
  books:
    sink: {kind: sqlite, path: out/books.db}
    datasets: [{ref: shop.orders, mode: merge}]
""")
    assert ferry("run", "shop.books", "--model", root).code == 0
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("insert into orders values (99, null, '-5.00')")
    db.close()
    done = ferry("run", "shop.books", "--model", root, "--json")
    assert done.code == 1
    result = statuses(done.out)
    assert result == {"ingest:shop.orders": "failed", "deliver:shop.books:orders": "skipped"}
    assert "check range(amount) failed" in done.err and '"id": 99' in done.err
    assert "check not_null(customer) failed" in done.err
    context = RunContext.from_loaded(load_model(root))
    assert context.store.dataset("shop.orders").version_numbers() == [1]
    with sqlite3.connect(root / "out" / "books.db") as db:
        assert db.execute("select count(*), max(id) from orders").fetchall() == [(20, 20)]
    db.close()


def test_an_error_while_the_sql_runs_is_the_transformers_error(
        root: Path, ferry: Callable[..., Any]) -> None:
    """DuckDB evaluates lazily: an overflow surfaces while the output is written, and was
    'internal error'. It is the transformer's SQL failing, in one line."""
    (root / "teams/shop/sql/big.sql").write_text(
        "select 9223372036854625807 + g as id, 1.00 as amount from range(0, 300000) t(g)\n")
    assert ferry("run", "shop.orders", "--model", root).code == 0
    failed = ferry("run", "shop.big", "--model", root, "--json")
    assert failed.code == 1
    [run] = [r for r in json.loads(failed.out) if r["job"] == "transform:shop.big"]
    assert run["status"] == "failed"
    assert "the transformer's SQL failed" in run["message"] and "Overflow" in run["message"]
    assert "internal error" not in run["message"]


# --- governance at run time: a transformer of another zone gets masked columns -------------

ZONES = """\
ecosystem: acme
zones:
  eu: {export_classifications: [public, internal]}
  us: {}
"""

CRM = """\
team: crm
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: crm.db
    datasets:
      customers:
        table: customers
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          email: {type: string, classification: restricted, pii: true}
          country: {type: string(2)}
"""

SALES = """\
team: sales
zone: us
owners: [sam@acme.example]
transformers:
  contacts:
    inputs: [crm.customers]
    mask: {crm.customers: [email]}
    sql: select id, email from customers
    columns: {id: int64, email: string}
  scored:
    inputs: [crm.customers]
    mask: {crm.customers: [email]}
    python: contacts:emails
    columns: {id: int64, email: string}
"""

EMAILS = """\
import pyarrow as pa


def emails(customers: pa.Table) -> pa.Table:
    return customers.select(["id", "email"])
"""

ADDRESSES = ["ada@example.org", "bob@example.org"]


@pytest.fixture
def zones(tmp_path: Path) -> Path:
    """crm (zone eu) owns customers with a restricted pii email; sales (zone us) reads it."""
    root = write_files(tmp_path / "zones", {
        "ferry.yaml": ZONES, "teams/crm/crm.yaml": CRM, "teams/sales/sales.yaml": SALES,
        "teams/sales/contacts.py": EMAILS,
    })
    with sqlite3.connect(root / "crm.db") as db:
        db.execute("create table customers (id integer primary key, email text, country text)")
        db.executemany("insert into customers values (?, ?, 'DE')", enumerate(ADDRESSES, 1))
    db.close()
    return root


def keyed_hash(root: Path, value: str) -> str:
    key = mask_key(root / ".ferry")
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


@pytest.mark.security
def test_a_declared_mask_hands_the_transformer_the_keyed_hash(
        zones: Path, ferry: Callable[..., Any]) -> None:
    done = ferry("run", "sales.contacts", "sales.scored", "--model", zones)
    assert done.code == 0, done
    for ref in ("sales.contacts", "sales.scored"):
        emails = {r["id"]: r["email"] for r in rows(zones, ref)}
        assert emails == {1: keyed_hash(zones, ADDRESSES[0]), 2: keyed_hash(zones, ADDRESSES[1])}


@pytest.mark.security
@pytest.mark.parametrize("transformer", ["sales.contacts", "sales.scored"])
def test_the_engine_masks_what_the_zone_rule_requires_even_undeclared(
        zones: Path, ferry: Callable[..., Any], transformer: str) -> None:
    """``ferry check`` refuses the model without the mask; the engine masks regardless
    (a model applied without the check, an old server): no raw email reaches the output."""
    assert ferry("run", "crm.customers", "--model", zones).code == 0
    sales = zones / "teams" / "sales" / "sales.yaml"
    sales.write_text(sales.read_text().replace("    mask: {crm.customers: [email]}\n", ""))
    result = transform(RunContext.from_loaded(load_model(zones)), transformer)
    assert result.published is not None
    emails = [r["email"] for r in rows(zones, transformer)]
    assert sorted(emails) == sorted(keyed_hash(zones, a) for a in ADDRESSES)
    assert not set(emails) & set(ADDRESSES)


@pytest.mark.security
def test_the_engine_masks_what_the_teams_own_consumers_receive_only_masked(
        zones: Path, ferry: Callable[..., Any]) -> None:
    """Same zone, so the zone rule allows the raw email; but the team's consumer receives
    it masked, so its transformer gets the keyed hash too (the demo's marketing case)."""
    assert ferry("run", "crm.customers", "--model", zones).code == 0
    sales = zones / "teams" / "sales" / "sales.yaml"
    sales.write_text(sales.read_text().replace("zone: us", "zone: eu")
                     .replace("    mask: {crm.customers: [email]}\n", "")
                     + "consumers:\n  crm_copy:\n    sink: {kind: sqlite, path: out.db}\n"
                       "    datasets:\n      - ref: crm.customers\n        mask: [email]\n")
    result = transform(RunContext.from_loaded(load_model(zones)), "sales.contacts")
    assert result.published is not None
    emails = [r["email"] for r in rows(zones, "sales.contacts")]
    assert sorted(emails) == sorted(keyed_hash(zones, a) for a in ADDRESSES)


@pytest.mark.security
def test_transformer_sql_cannot_read_the_store_around_its_inputs(
        zones: Path, ferry: Callable[..., Any]) -> None:
    assert ferry("run", "crm.customers", "--model", zones).code == 0
    store = zones / ".ferry" / "store" / "crm" / "customers"
    sales = zones / "teams" / "sales" / "sales.yaml"
    sales.write_text(sales.read_text().replace(
        "sql: select id, email from customers",
        f"sql: select id, email from read_parquet('{store}/*.parquet')"))
    with pytest.raises(TransformError, match="file system operations are disabled"):
        transform(RunContext.from_loaded(load_model(zones)), "sales.contacts")
    assert not (zones / ".ferry" / "store" / "sales" / "contacts").exists()


@pytest.mark.security
def test_an_input_whose_owners_do_not_approve_the_team_is_refused(
        zones: Path, ferry: Callable[..., Any]) -> None:
    assert ferry("run", "crm.customers", "--model", zones).code == 0
    crm = zones / "teams" / "crm" / "crm.yaml"
    crm.write_text(crm.read_text().replace("primary_key: [id]",
                                           "primary_key: [id]\n        allowed_consumers: []"))
    with pytest.raises(TransformError, match=r"may not read crm\.customers.*allowed_consumers"):
        transform(RunContext.from_loaded(load_model(zones)), "sales.contacts")


def test_a_shrinking_output_is_refused_unless_allowed(root: Path, ferry: Callable[..., Any]) -> None:
    assert ferry("run", "shop.big", "--model", root).code == 0  # 11 rows
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("update orders set amount = '1.00' where id > 12")
    db.close()
    refused = ferry("run", "shop.big", "--model", root, "--json")
    assert refused.code == 1 and statuses(refused.out)["transform:shop.big"] == "failed"
    message = {r["job"]: r["message"] for r in json.loads(refused.out)}["transform:shop.big"]
    assert "shop.big: this version would remove 8 of 11 rows" in message
    assert sorted(r["id"] for r in rows(root, "shop.big")) == list(range(10, 21))
    # The snapshot ingest that read the change did publish; rerunning it is not needed.
    allowed = ferry("run", "shop.big", "--allow-delete", "--model", root)
    assert allowed.code == 0, allowed
    assert sorted(r["id"] for r in rows(root, "shop.big")) == [10, 11, 12]


def test_an_emptied_source_table_is_not_ingested(root: Path, ferry: Callable[..., Any]) -> None:
    assert ferry("run", "shop.orders", "--model", root).code == 0
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("delete from orders")
    db.close()
    refused = ferry("run", "shop.orders", "--model", root)
    assert refused.code == 1 and "would remove 20 of 20 rows" in refused.err + refused.out
    assert len(rows(root, "shop.orders")) == 20
    assert ferry("run", "shop.orders", "--allow-delete", "--model", root).code == 0
    assert rows(root, "shop.orders") == []


@pytest.mark.parametrize(("sql", "error"), [
    ("select customer as id, amount from orders",
     "shop.keyed: primary key (id) is not unique: 3 keys appear in more than one row (20 rows)"),
    ("select null::bigint as id, amount from orders",
     "column 'id' at row 0: the value is null, but the column is part of the primary key"),
])
def test_a_transformer_output_keeps_its_key(root: Path, ferry: Callable[..., Any], sql: str,
                                            error: str) -> None:
    team = root / "teams" / "shop" / "shop.yaml"
    team.write_text(team.read_text() + f"""\
  keyed:
    inputs: [shop.orders]
    sql: {sql}
    columns: {{id: int64, amount: decimal(12,2)}}
    primary_key: [id]
""")
    failed = ferry("run", "shop.keyed", "--model", root)
    assert failed.code == 1 and error in failed.err, failed
    context = RunContext.from_loaded(load_model(root))
    assert context.store.dataset("shop.keyed").version_numbers() == []
