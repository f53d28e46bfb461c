"""Transformers rebuild when their definition changes (issue 13, part 3): SQL, sql_file,
Python source, declared columns, nullability, key, checks; not descriptions. ``--full``
re-runs a transform; ``ferry plan`` names what changed."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.model.spec import Transformer
from dataferry.store.manifest import Manifest
from dataferry.store.publish import publish
from tests.engine.test_transform import root, rows

__all__ = ["root"]  # the fixture: the shop model of test_transform

ALL = ("shop.revenue", "shop.big", "shop.scored")


def results(ferry: Callable[..., Any], root: Path, *refs: str) -> dict[str, dict[str, Any]]:
    """The transforms of a ``ferry run --json``: job -> its result."""
    done = ferry("run", *refs, "--model", root, "--json")
    assert done.code == 0, done
    return {r["job"]: r for r in json.loads(done.out) if r["job"].startswith("transform:")}


def statuses(found: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {job: r["status"] for job, r in found.items()}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def versions(ferry: Callable[..., Any], root: Path, ref: str) -> list[int]:
    return [e["version"] for e in json.loads(ferry("log", ref, "--model", root, "--json").out)]


def test_editing_the_sql_reruns_that_transform_and_nothing_else(
        root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, *ALL)
    edit(root / "teams/shop/shop.yaml", "count(*) as orders", "count(*) * 10 as orders")
    found = results(ferry, root, *ALL)
    assert statuses(found) == {"transform:shop.revenue": "succeeded",
                               "transform:shop.big": "unchanged",
                               "transform:shop.scored": "unchanged"}
    assert "SQL changed" in found["transform:shop.revenue"]["message"]
    assert {r["name"]: r["orders"] for r in rows(root, "shop.revenue")}["ada"] == 60
    assert statuses(results(ferry, root, *ALL)) == dict.fromkeys(
        ["transform:shop.revenue", "transform:shop.big", "transform:shop.scored"], "unchanged")


def test_editing_the_sql_file_reruns_it(root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.big")
    (root / "teams/shop/sql/big.sql").write_text(
        "select id, amount from orders where amount >= 150\n")
    found = results(ferry, root, "shop.big")
    assert found["transform:shop.big"]["status"] == "succeeded"
    assert "SQL changed" in found["transform:shop.big"]["message"]
    assert sorted(r["id"] for r in rows(root, "shop.big")) == list(range(15, 21))


def test_editing_the_python_function_reruns_it(root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.scored")
    edit(root / "teams/shop/scoring.py", "pc.divide(amount, 100.0)", "pc.divide(amount, 1000.0)")
    found = results(ferry, root, "shop.scored")
    assert found["transform:shop.scored"]["status"] == "succeeded"
    assert "Python source changed" in found["transform:shop.scored"]["message"]
    assert {r["id"]: r["score"] for r in rows(root, "shop.scored")}[7] == 0.07


def test_a_new_column_reruns_it_and_show_serves_the_new_schema(
        root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.revenue")
    model = root / "teams/shop/shop.yaml"
    edit(model, "count(*) as orders\n", "count(*) as orders, max(o.id) as last_order\n")
    edit(model, "orders: int64}", "orders: int64, last_order: int64}")
    found = results(ferry, root, "shop.revenue")
    assert found["transform:shop.revenue"]["status"] == "succeeded"
    assert "columns changed: added last_order" in found["transform:shop.revenue"]["message"]
    shown = json.loads(ferry("show", "shop.revenue", "--model", root, "--json").out)
    assert [c["name"] for c in shown["schema"]] == ["name", "total", "orders", "last_order"]


def test_a_column_made_not_nullable_reruns_it(root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.revenue")
    edit(root / "teams/shop/shop.yaml", "orders: int64}", "orders: {type: int64, nullable: false}}")
    found = results(ferry, root, "shop.revenue")
    assert found["transform:shop.revenue"]["status"] == "succeeded"
    assert "columns changed: orders not nullable" in found["transform:shop.revenue"]["message"]
    shown = json.loads(ferry("show", "shop.revenue", "--model", root, "--json").out)
    assert {c["name"]: c["nullable"] for c in shown["schema"]}["orders"] is False


def test_a_new_check_reruns_it(root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.revenue")
    edit(root / "teams/shop/shop.yaml", "    primary_key: [name]\n",
         "    primary_key: [name]\n    checks:\n      - not_null: [total]\n")
    found = results(ferry, root, "shop.revenue")
    assert found["transform:shop.revenue"]["status"] == "succeeded"
    assert "checks changed" in found["transform:shop.revenue"]["message"]


@pytest.mark.parametrize(("addition", "reason"), [
    ("    mask: {shop.orders: [customer]}\n", "masks changed"),
    ("    primary_key: [id]\n", 'primary key changed: [] -> ["id"]'),
])
def test_a_new_mask_or_key_reruns_it(root: Path, ferry: Callable[..., Any], addition: str,
                                     reason: str) -> None:
    results(ferry, root, "shop.big")
    edit(root / "teams/shop/shop.yaml", "    sql_file: sql/big.sql\n",
         "    sql_file: sql/big.sql\n" + addition)
    found = results(ferry, root, "shop.big")
    assert found["transform:shop.big"]["message"] == f"version 2 ({reason})"
    assert versions(ferry, root, "shop.big") == [2, 1]


def test_a_new_description_does_not_rerun_it(root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.revenue")
    edit(root / "teams/shop/shop.yaml", "  revenue:\n",
         "  revenue:\n    description: Revenue per customer\n")
    assert statuses(results(ferry, root, "shop.revenue")) == {
        "transform:shop.revenue": "unchanged"}
    assert versions(ferry, root, "shop.revenue") == [1]


def test_a_sql_edit_that_changes_no_row_records_the_definition_once(
        root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.revenue")
    edit(root / "teams/shop/shop.yaml", "select c.name,", "select  c.name,")
    assert results(ferry, root, "shop.revenue")["transform:shop.revenue"]["status"] \
        == "succeeded"
    assert versions(ferry, root, "shop.revenue") == [2, 1]  # same rows, the new definition
    assert statuses(results(ferry, root, "shop.revenue")) == {
        "transform:shop.revenue": "unchanged"}
    checked = ferry("verify", "shop.revenue", "--model", root)  # a keyed (merged) version
    assert checked.code == 0, checked


def test_new_inputs_that_change_no_row_are_recorded_once(
        root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.big")
    with sqlite3.connect(root / "shop.db") as db:  # below big's threshold: same output
        db.execute("insert into orders values (21, 0, '5.00')")
    db.close()
    found = results(ferry, root, "shop.big")
    assert found["transform:shop.big"]["message"] == "version 2 (new input versions: shop.orders 2)"
    log = json.loads(ferry("log", "shop.big", "--model", root, "--json").out)
    assert [(e["version"], e["rows"]) for e in log] == [(2, 11), (1, 11)]
    assert log[0]["lineage"][0]["version"] == 2  # what it was computed from
    assert statuses(results(ferry, root, "shop.big")) == {"transform:shop.big": "unchanged"}


def test_a_keyed_transform_with_new_inputs_and_the_same_rows_stays_verifiable(
        root: Path, ferry: Callable[..., Any]) -> None:
    """A keyed transform is merged into its head; with no row different, its new version
    (new input versions) is a Delta commit of its own that changes no file. The chaos
    test found it once referred to the head's commit, which verify then refused."""
    results(ferry, root, "shop.revenue")
    with sqlite3.connect(root / "shop.db") as db:  # a customer without orders: same output
        db.execute("insert into customers values (99, 'nobody')")
    db.close()
    found = results(ferry, root, "shop.revenue")
    assert found["transform:shop.revenue"]["message"] == (
        "version 2 (new input versions: shop.customers 2)")
    checked = ferry("verify", "shop.revenue", "--model", root)
    assert checked.code == 0, checked
    store = RunContext.from_loaded(load_model(root)).store.dataset("shop.revenue")
    first, second = (store.reader(store.resolve(n)).read_all().sort_by("name")
                     for n in (1, 2))
    assert second.equals(first)
    with sqlite3.connect(root / "shop.db") as db:  # and the next real change merges on top
        db.execute("update customers set name = 'ada lovelace' where name = 'ada'")
    db.close()
    assert statuses(results(ferry, root, "shop.revenue")) == {
        "transform:shop.revenue": "succeeded"}
    assert "ada lovelace" in {r["name"] for r in rows(root, "shop.revenue")}
    checked = ferry("verify", "shop.revenue", "--model", root)
    assert checked.code == 0, checked


def test_full_reruns_it_and_publishes_nothing_when_the_output_is_the_same(
        root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.revenue")
    found = results(ferry, root, "shop.revenue", "--full")
    assert found["transform:shop.revenue"]["status"] == "unchanged"
    assert found["transform:shop.revenue"]["message"] == (
        "ran (--full): the output is the same as version 1, nothing published")
    assert versions(ferry, root, "shop.revenue") == [1]


def test_plan_names_what_changed(root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, *ALL)
    edit(root / "teams/shop/shop.yaml", "count(*) as orders", "count(*) * 10 as orders")
    (root / "teams/shop/sql/big.sql").write_text("select id, amount from orders\n")
    plan = json.loads(ferry("plan", "--model", root, "--json").out)
    jobs = {j["id"]: j for j in plan["jobs"]}
    assert jobs["transform:shop.revenue"]["rebuild"] == "SQL changed"
    assert jobs["transform:shop.revenue"]["definition"] == "changed"
    assert jobs["transform:shop.scored"]["rebuild"] is None
    assert jobs["transform:shop.scored"]["definition"] == "current"
    assert jobs["ingest:shop.orders"]["rebuild"] is None
    text = ferry("plan", "--model", root).out
    assert "shop.revenue  rebuild: SQL changed" in text
    assert "shop.big  rebuild: SQL changed" in text
    assert "shop.scored  rebuild" not in text
    results(ferry, root, *ALL)
    plan = json.loads(ferry("plan", "--model", root, "--json").out)
    assert {j["rebuild"] for j in plan["jobs"]} == {None}


def test_a_version_from_before_fingerprints_is_kept_until_its_schema_differs(
        root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.orders", "shop.customers")
    context = RunContext.from_loaded(load_model(root))
    spec = context.index.datasets["shop.revenue"].spec
    assert isinstance(spec, Transformer)
    lineage = [{"ref": r, "version": 1,
                "manifest_hash": context.store.dataset(r).version(1).hash}
               for r in ("shop.orders", "shop.customers")]
    old = pa.table({"name": ["ada"], "total": pa.array([1], pa.decimal128(18, 2)),
                    "orders": [1]})
    publish(context.store.dataset("shop.revenue"), spec, old, keys=context.store.keys,
            lineage=lineage)  # as versions were published before fingerprints
    assert statuses(results(ferry, root, "shop.revenue")) == {
        "transform:shop.revenue": "unchanged"}
    plan = json.loads(ferry("plan", "--model", root, "--json").out)
    revenue = next(j for j in plan["jobs"] if j["id"] == "transform:shop.revenue")
    assert (revenue["definition"], revenue["rebuild"]) == ("not recorded", None)
    assert "shop.revenue  definition not recorded" in ferry("plan", "--model", root).out
    edit(root / "teams/shop/shop.yaml", "orders: int64}", "orders: int32}")
    found = results(ferry, root, "shop.revenue")
    assert found["transform:shop.revenue"]["status"] == "succeeded"
    assert "columns changed: orders int64 -> int32" in found["transform:shop.revenue"]["message"]
    plan = json.loads(ferry("plan", "--model", root, "--json").out)
    revenue = next(j for j in plan["jobs"] if j["id"] == "transform:shop.revenue")
    assert revenue["definition"] == "current"


def test_the_manifest_records_the_definition_and_the_store_verifies(
        root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.revenue")
    log = json.loads(ferry("log", "shop.revenue", "--model", root, "--json").out)
    definition = log[0]["definition"]
    assert set(definition["parts"]) == {"body", "columns", "primary_key", "checks", "masks"}
    assert definition["body"] == "sql" and len(definition["fingerprint"]) == 64
    ingest = json.loads(ferry("log", "shop.orders", "--model", root, "--json").out)
    assert ingest[0]["definition"] is None
    raw = RunContext.from_loaded(load_model(root)).store.dataset("shop.orders") \
        .manifest_path(1).read_bytes()
    assert b'"definition"' not in raw  # other manifests stay as they were
    assert ferry("verify", "--model", root).code == 0


@given(st.none() | st.fixed_dictionaries({
    "fingerprint": st.text(), "body": st.sampled_from(["sql", "python"]),
    "parts": st.dictionaries(st.sampled_from(["body", "columns", "checks"]), st.text())}))
def test_a_manifest_round_trips_with_or_without_a_definition(
        definition: dict[str, Any] | None) -> None:
    manifest = Manifest("t.d", "id", 1, "2026-01-01T00:00:00.000000Z", None, {}, {}, (), (),
                        0, 0, 0, "root", definition=definition)
    raw = manifest.to_bytes()
    assert Manifest.from_bytes(raw) == manifest
    assert (b'"definition"' in raw) is (definition is not None)


def test_plan_names_a_source_dataset_whose_schema_changed(
        root: Path, ferry: Callable[..., Any]) -> None:
    results(ferry, root, "shop.orders")
    edit(root / "teams/shop/shop.yaml", "customer: {type: int64}", "customer: {type: int32}")
    plan = json.loads(ferry("plan", "--model", root, "--json").out)
    orders = next(j for j in plan["jobs"] if j["id"] == "ingest:shop.orders")
    assert orders["rebuild"] == "columns changed: customer int64 -> int32"
    assert "shop.orders  rebuild: columns changed: customer int64 -> int32 (its next ingest" \
        in ferry("plan", "--model", root).out
    assert ferry("run", "shop.orders", "--model", root).code == 0
    plan = json.loads(ferry("plan", "--model", root, "--json").out)
    assert {j["rebuild"] for j in plan["jobs"]} == {None}
