"""The catalog read models on the demo ecosystem: listing, detail, versions, rows, lineage."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from dataferry.cli.main import invoke
from dataferry.engine.context import RunContext
from dataferry.engine.deliver import _masker, mask_key
from dataferry.metadata import Metadata, RunHistory, Staleness, open_metadata
from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from dataferry.server import catalog
from dataferry.server.authz import RowAccess, row_access
from dataferry.server.principal import Principal
from dataferry.store.files import json_value
from dataferry.store.publish import publish
from dataferry.store.store import Store
from tests.conftest import write_files


@dataclass
class Demo:
    root: Path
    index: ModelIndex
    store: Store


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """`ferry demo`: the acme example, run twice, its consumers filled."""
    root = tmp_path_factory.mktemp("catalog") / "demo"
    assert invoke(["demo", str(root), "--scale", "1"]) == 0
    context = RunContext.from_loaded(load_model(root))
    return Demo(root, context.index, context.store)


def member(*teams: str) -> Principal:
    return Principal(user_id=7, username="m", role="member", teams=frozenset(teams))


def owner_access(demo: Demo, ref: str) -> RowAccess:
    access = row_access(demo.index, member(demo.index.datasets[ref].team), ref)
    assert access is not None
    return access


def all_rows(demo: Demo, ref: str, access: RowAccess,
             version: int | None = None) -> list[dict[str, Any]]:
    out, offset = [], 0
    while True:
        page = catalog.rows(demo.store, ref, version, access, offset, catalog.MAX_ROWS)
        assert page is not None
        out += page.rows
        offset += len(page.rows)
        if not page.more:
            return out


# --- listing -------------------------------------------------------------------------


def test_listing_pages_through_every_dataset_sorted(demo: Demo) -> None:
    everything, total = catalog.list_datasets(demo.index, demo.store, limit=1000)
    assert total == len(demo.index.datasets) == len(everything)
    assert [d.ref for d in everything] == sorted(demo.index.datasets)
    pages = [catalog.list_datasets(demo.index, demo.store, offset=o, limit=4) for o in (0, 4, 8)]
    assert all(t == total for _, t in pages)
    assert [d.ref for page, _ in pages for d in page] == [d.ref for d in everything[:12]]
    orders = next(d for d in everything if d.ref == "shop.orders")
    head = demo.store.dataset("shop.orders").head()
    assert head is not None
    assert (orders.team, orders.kind, orders.classification) == ("shop", "source", "internal")
    assert orders.owners == ["alice@acme.example", "bob@acme.example"]
    assert orders.description == "One row per order"
    assert (orders.version, orders.rows, orders.updated_at) == (
        head.number, head.manifest.rows, head.manifest.created_at)
    revenue = next(d for d in everything if d.ref == "shop.customer_revenue")
    assert revenue.kind == "transformer"
    assert revenue.version == demo.store.dataset("shop.customer_revenue").head_number()
    invoices = next(d for d in everything if d.ref == "finance.invoices")
    assert invoices.version is None and invoices.rows is None  # never ingested in the demo


def test_search_matches_ref_description_and_columns_case_insensitively(demo: Demo) -> None:
    def refs(search: str, team: str | None = None) -> list[str]:
        found, total = catalog.list_datasets(demo.index, demo.store, search, team, 0, 100)
        assert total == len(found)
        return [d.ref for d in found]

    assert refs("EMAIL") == ["shop.customers"]  # a column name
    assert refs("one row per order") == ["shop.orders"]  # the description, every word
    assert refs("revenue") == ["finance.revenue_eur", "shop.customer_revenue",
                               "shop.daily_sales"]  # refs and a column of daily_sales
    assert refs("revenue", team="finance") == ["finance.revenue_eur"]
    assert refs("nothing-like-this") == []
    assert refs("") == refs("  ") == sorted(demo.index.datasets)


def test_listing_sees_a_new_version_even_with_a_cached_head(tmp_path: Path) -> None:
    root = write_files(tmp_path / "model", {
        "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
        "teams/shop/shop.yaml": """\
            team: shop
            zone: eu
            owners: [alice@acme.example]
            sources:
              db:
                kind: sqlite
                path: shop.db
                datasets:
                  items: {columns: {id: int64}}
            """,
    })
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    index, store = ModelIndex(loaded.ecosystem), Store.for_model(root, loaded.ecosystem)
    assert catalog.list_datasets(index, store)[0][0].version is None
    spec = index.datasets["shop.items"].spec
    publish(store.dataset("shop.items"), spec, pa.table({"id": [1, 2]}), keys=store.keys)
    directory = store.dataset("shop.items").sig / "m"
    long_ago = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    os.utime(directory, (long_ago, long_ago))  # old enough to be cached
    for _ in range(2):
        (item,), _ = catalog.list_datasets(index, store)
        assert (item.version, item.rows) == (1, 2)
    publish(store.dataset("shop.items"), spec, pa.table({"id": [1, 2, 3]}), keys=store.keys)
    (item,), _ = catalog.list_datasets(index, store)
    assert (item.version, item.rows) == (2, 3)


# --- detail and freshness ------------------------------------------------------------------


def test_detail_shows_schema_owners_consumers_and_latest_version(demo: Demo) -> None:
    detail = catalog.dataset_detail(demo.index, demo.store, None, "shop.customers")
    assert detail is not None
    columns = {c["name"]: c for c in detail.columns}
    assert columns["email"] == {"name": "email", "type": "string", "nullable": True,
                                "classification": "restricted", "pii": True,
                                "description": None}
    assert columns["name"]["classification"] == "internal"  # the dataset's, inherited
    assert columns["id"]["nullable"] is False
    assert detail.primary_key == ["id"] and detail.status == "production"
    assert detail.owners == ["alice@acme.example", "bob@acme.example"]
    consumers = {c["consumer"]: c for c in detail.consumers}
    assert set(consumers) == {"finance.ledger", "marketing.segments"}
    assert consumers["marketing.segments"] == {
        "consumer": "marketing.segments", "team": "marketing", "mode": "merge",
        "columns": ["id", "country", "email", "updated_at"], "where": None,
        "table": "customers", "mask": ["email"], "freshness": "1d"}
    assert consumers["finance.ledger"]["table"] == "customers_history"
    assert detail.transformers == ["shop.customer_revenue"]
    head = demo.store.dataset("shop.customers").head()
    assert head is not None
    assert detail.versions == len(demo.store.dataset("shop.customers").version_numbers())
    assert detail.latest == {"version": head.number, "rows": head.manifest.rows,
                             "created_at": head.manifest.created_at,
                             "manifest_hash": head.hash}


def test_detail_of_a_transformer_and_of_unknown_refs(demo: Demo) -> None:
    detail = catalog.dataset_detail(demo.index, demo.store, None, "finance.revenue_eur")
    assert detail is not None and detail.kind == "transformer"
    assert detail.inputs == ["shop.orders", "finance.fx_rates"]
    assert detail.latest is None and detail.versions == 0
    assert detail.freshness["status"] == "unknown"
    assert catalog.dataset_detail(demo.index, demo.store, None, "shop.nope") is None


@pytest.fixture
def metadata(tmp_path: Path) -> Metadata:
    return open_metadata(f"sqlite:///{tmp_path / 'ferry.db'}")


def test_freshness_against_each_consumers_need(demo: Demo, metadata: Metadata) -> None:
    head = demo.store.dataset("shop.orders").head()
    assert head is not None
    published = datetime.fromisoformat(head.manifest.created_at.replace("Z", "+00:00"))

    def freshness(now: datetime, db: Metadata | None = None) -> dict[str, Any]:
        detail = catalog.dataset_detail(demo.index, demo.store, db, "shop.orders", now=now)
        assert detail is not None
        return detail.freshness

    fresh = freshness(published + timedelta(minutes=30))
    assert fresh["status"] == "fresh" and fresh["reasons"] == []
    late = freshness(published + timedelta(hours=2))  # shop.reporting asks for 1h
    assert late["status"] == "stale"
    assert late["reasons"] == [f"data is from {published:%Y-%m-%d %H:%M}Z, older than the 1h "
                               "consumer shop.reporting asks for"]
    by_consumer = {n["consumer"]: n["status"] for n in late["needs"]}
    assert by_consumer == {"finance.ledger": "fresh", "research.lake": "fresh",
                           "shop.reporting": "stale"}
    # An ingest that found nothing new still confirms the data: fresh again.
    confirmed = published + timedelta(hours=3)
    runs = RunHistory(metadata, now=lambda: confirmed)
    run = runs.start_run("ingest:shop.orders", "ingest", "schedule", 1, "w", 60)
    runs.finish_run(run, "unchanged")
    later = freshness(confirmed + timedelta(minutes=10), metadata)
    assert later["status"] == "fresh"
    assert later["data_as_of"] == confirmed.isoformat()
    # The scheduler's mark wins, with its reason.
    Staleness(metadata).mark("deliver:research.lake:orders_positive", published, "ingest failed")
    marked = freshness(confirmed + timedelta(minutes=10), metadata)
    assert marked["status"] == "stale"
    assert marked["reasons"] == ["consumer research.lake: ingest failed"]


# --- versions ------------------------------------------------------------------------------


def test_versions_newest_first_with_paging(demo: Demo) -> None:
    dataset = demo.store.dataset("shop.orders")
    items, total = catalog.versions(demo.store, "shop.orders")
    assert total == len(dataset.version_numbers()) == 2
    assert [v["version"] for v in items] == [2, 1]
    first = dataset.version(1)
    assert items[1] == {"version": 1, "created_at": first.manifest.created_at,
                        "rows": first.manifest.rows, "added": first.manifest.rows,
                        "removed": 0, "files_added": len(first.manifest.files),
                        "files_removed": 0, "mode": first.manifest.mode,
                        "manifest_hash": first.hash}
    assert items[0]["added"] > 0
    assert catalog.versions(demo.store, "shop.orders", offset=1, limit=1) == ([items[1]], 2)
    assert catalog.versions(demo.store, "finance.invoices") == ([], 0)


# --- rows ------------------------------------------------------------------------------------


def test_rows_page_in_a_stable_order(demo: Demo) -> None:
    access = owner_access(demo, "shop.orders")
    whole = catalog.rows(demo.store, "shop.orders", None, access, 0, 10)
    assert whole is not None and whole.more and len(whole.rows) == 10
    assert [c["name"] for c in whole.columns] == list(access.columns)
    halves = [catalog.rows(demo.store, "shop.orders", None, access, o, 5) for o in (0, 5)]
    assert [r for page in halves if page for r in page.rows] == whole.rows
    everything = all_rows(demo, "shop.orders", access)
    head = demo.store.dataset("shop.orders").head()
    assert head is not None and len(everything) == head.manifest.rows
    assert len({r["id"] for r in everything}) == len(everything)
    last = catalog.rows(demo.store, "shop.orders", None, access, len(everything) - 3, 10)
    assert last is not None and len(last.rows) == 3 and not last.more
    past = catalog.rows(demo.store, "shop.orders", None, access, len(everything) + 5, 10)
    assert past is not None and past.rows == [] and not past.more
    capped = catalog.rows(demo.store, "shop.orders", None, access, 0, 10**6)
    assert capped is not None and capped.limit == catalog.MAX_ROWS


def test_rows_of_an_older_version_and_of_versions_that_do_not_exist(demo: Demo) -> None:
    access = owner_access(demo, "shop.orders")
    first = all_rows(demo, "shop.orders", access, version=1)
    assert len(first) == demo.store.dataset("shop.orders").version(1).manifest.rows
    assert catalog.rows(demo.store, "shop.orders", 99, access) is None
    assert catalog.rows(demo.store, "finance.invoices", None, owner_access(
        demo, "finance.invoices")) is None


def test_a_consumers_team_sees_exactly_the_rows_its_sink_got(demo: Demo) -> None:
    access = row_access(demo.index, member("research"), "shop.orders")
    assert access is not None and access.where == "amount > 0"
    api = all_rows(demo, "shop.orders", access)
    lake = pads.dataset(demo.root / "data/out/lake/orders_positive", format="parquet")
    sink = lake.to_table(columns=list(access.columns)).to_pylist()
    expected = sorted(({k: json_value(v) for k, v in row.items()} for row in sink),
                      key=lambda r: r["id"])
    assert sorted(api, key=lambda r: r["id"]) == expected
    assert list(api[0]) == list(access.columns)


def test_rows_are_filtered_by_the_where(demo: Demo) -> None:
    everything = all_rows(demo, "shop.orders", owner_access(demo, "shop.orders"))
    cut = sorted(float(r["amount"]) for r in everything)[len(everything) // 2]
    access = RowAccess(("id", "amount"), f"amount > {cut}", (), "test")
    filtered = all_rows(demo, "shop.orders", access)
    assert filtered and all(float(r["amount"]) > cut for r in filtered)
    assert len(filtered) == sum(float(r["amount"]) > cut for r in everything)
    # the filter may use a column the grant does not show
    hidden = RowAccess(("id",), f"amount > {cut}", (), "test")
    assert [r["id"] for r in all_rows(demo, "shop.orders", hidden)] == [
        r["id"] for r in filtered]


def test_masked_columns_match_the_deliverys_keyed_hash(demo: Demo) -> None:
    access = row_access(demo.index, member("marketing"), "shop.customers")
    assert access is not None and access.mask == ("email",)
    page = catalog.rows(demo.store, "shop.customers", None, access, 0, catalog.MAX_ROWS)
    assert page is not None and not page.more
    assert next(c for c in page.columns if c["name"] == "email") == {
        "name": "email", "type": "string", "masked": True}
    clear = {r["id"]: r["email"] for r in all_rows(
        demo, "shop.customers", owner_access(demo, "shop.customers"))}
    ids = [r["id"] for r in page.rows]
    hashed = _masker(mask_key(demo.store.home))(pa.array([clear[i] for i in ids], pa.string()))
    assert [r["email"] for r in page.rows] == hashed.to_pylist()
    assert all("@" not in r["email"] for r in page.rows)
    with sqlite3.connect(demo.root / "data/out/marketing.db") as db:
        sink = dict(db.execute("select id, email from customers").fetchall())
    assert {r["id"]: r["email"] for r in page.rows} == sink


# --- lineage ----------------------------------------------------------------------------------


def edges(graph: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["from"], e["to"]) for e in graph["edges"]}


def test_lineage_of_a_source_dataset_goes_downstream(demo: Demo) -> None:
    graph = catalog.lineage(demo.index, "shop.customers")
    assert graph is not None
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds == {
        "dataset:shop.customers": "source-dataset",
        "dataset:shop.customer_revenue": "transformer",
        "consumer:finance.ledger": "consumer",
        "consumer:marketing.segments": "consumer",
        "consumer:shop.reporting": "consumer",
    }
    assert edges(graph) == {
        ("dataset:shop.customers", "dataset:shop.customer_revenue"),
        ("dataset:shop.customers", "consumer:finance.ledger"),
        ("dataset:shop.customers", "consumer:marketing.segments"),
        ("dataset:shop.customer_revenue", "consumer:shop.reporting"),
    }
    focus = [n for n in graph["nodes"] if n["focus"]]
    assert [n["id"] for n in focus] == ["dataset:shop.customers"]
    assert {n["id"]: n["team"] for n in graph["nodes"]}["consumer:marketing.segments"] == \
        "marketing"


def test_lineage_of_a_transformer_goes_both_ways(demo: Demo) -> None:
    graph = catalog.lineage(demo.index, "finance.revenue_eur")
    assert graph is not None
    assert edges(graph) == {
        ("dataset:shop.orders", "dataset:finance.revenue_eur"),
        ("dataset:finance.fx_rates", "dataset:finance.revenue_eur"),
        ("dataset:finance.revenue_eur", "consumer:finance.warehouse"),
    }
    # upstream shows only the chain, not shop.orders' other readers
    assert "consumer:shop.reporting" not in {n["id"] for n in graph["nodes"]}


def test_lineage_depth_and_unknown_refs(demo: Demo) -> None:
    full = catalog.lineage(demo.index, "shop.orders")
    near = catalog.lineage(demo.index, "shop.orders", depth=1)
    assert full is not None and near is not None
    assert ("dataset:shop.daily_sales", "consumer:research.lake") in edges(full)
    assert ("dataset:shop.daily_sales", "consumer:research.lake") not in edges(near)
    assert ("dataset:shop.orders", "dataset:shop.daily_sales") in edges(near)
    assert catalog.lineage(demo.index, "shop.orders", depth=0) == {
        "nodes": [full["nodes"][0]], "edges": []}
    assert catalog.lineage(demo.index, "shop.nope") is None


@pytest.mark.parametrize("where", [
    "amount > 0) union all (select 1, 2",  # a second query
    "amount > 0 and (select count(*) from read_text('/etc/passwd')) > 0",  # a file
])
def test_a_where_cannot_break_out_of_its_expression(demo: Demo, where: str) -> None:
    access = RowAccess(("id", "amount"), where, (), "test")
    with pytest.raises(duckdb.Error):
        catalog.rows(demo.store, "shop.orders", None, access)
