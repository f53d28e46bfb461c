"""`ferry plan` / `ferry apply`: P + T + C jobs, platforms with reasons, changes since apply."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from dataferry.broker.graph import build_graph
from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from tests.conftest import write_files

ECOSYSTEM = """\
ecosystem: acme
zones:
  eu: {}
  vault: {platforms: [secure, local]}
platforms:
  local: {engine: duckdb}
  secure: {engine: duckdb}
  spark: {engine: spark, master: "local[2]", min_rows: 1000}
  hq: {engine: duckdb, network: hq-lan}
"""

SHOP = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: duckdb
    path: shop.duckdb
    datasets:
      orders:
        table: orders
        primary_key: [id]
        columns: {id: {type: int64, nullable: false}, amount: float64}
      audit:
        table: orders
        columns: {id: int64}
  lan:
    kind: postgres
    dsn: postgresql://hq.internal/erp
    network: hq-lan
    datasets:
      ledger:
        table: ledger
        columns: {id: int64}
consumers:
{consumers}
"""

CONSUMER = """\
  {name}:
    sink: {{kind: duckdb, path: out/{name}.duckdb}}
    datasets: [{{ref: shop.orders}}]
"""

VAULT = """\
team: vault
zone: vault
owners: [bob@acme.example]
consumers:
  keep:
    sink: {kind: duckdb, path: out/vault.duckdb}
    datasets: [{ref: shop.orders}, {ref: shop.ledger}]
"""


def make(tmp_path: Path, consumers: list[str]) -> Path:
    root = write_files(tmp_path / "model", {
        "ferry.yaml": ECOSYSTEM,
        "teams/shop/shop.yaml": SHOP.replace(
            "{consumers}", "".join(CONSUMER.format(name=n) for n in consumers) or "  {}"),
        "teams/vault/vault.yaml": VAULT,
    })
    if not (root / "shop.duckdb").exists():
        with duckdb.connect(str(root / "shop.duckdb")) as db:
            db.execute("create table orders as select i as id, i * 1.0 as amount "
                       "from range(1, 1501) t(i)")
    return root


def index_of(root: Path) -> ModelIndex:
    loaded = load_model(root)
    assert loaded.ecosystem is not None
    return ModelIndex(loaded.ecosystem)


def test_three_consumers_of_one_dataset_make_one_ingest(tmp_path: Path) -> None:
    graph = build_graph(index_of(make(tmp_path, ["a", "b", "c"])))
    ingests = [j.id for j in graph.jobs.values() if j.kind == "ingest"]
    delivers = [j.id for j in graph.jobs.values() if j.dataset == "shop.orders"
                and j.kind == "deliver"]
    assert ingests.count("ingest:shop.orders") == 1 and len(delivers) == 4  # a, b, c, vault
    assert "ingest:shop.audit" not in graph.jobs  # nobody needs it, no schedule


def test_platforms_follow_the_rules_and_say_why(tmp_path: Path) -> None:
    index = index_of(make(tmp_path, ["a"]))
    small = build_graph(index, sizes={"shop.orders": 10})
    assert (small.jobs["ingest:shop.orders"].platform,
            small.jobs["ingest:shop.orders"].why) == ("local", "defaults.platform")
    large = build_graph(index, sizes={"shop.orders": 1500})
    job = large.jobs["ingest:shop.orders"]
    assert job.platform == "spark" and "1,500 rows reach platform spark's min_rows" in job.why
    assert large.jobs["ingest:shop.ledger"].platform == "hq"  # its network wins over size
    vault = large.jobs["deliver:vault.keep:orders"]
    assert vault.platform == "secure" and "zone vault allows only secure, local" in vault.why
    assert small.jobs["deliver:vault.keep:orders"].platform == "local"


def test_plan_apply_and_the_changes_since(tmp_path: Path, ferry: Callable[..., Any]) -> None:
    root = make(tmp_path, ["a", "b"])
    first = ferry("plan", "--model", root, "--json")
    assert first.code == 0, first
    document = json.loads(first.out)
    ids = [j["id"] for j in document["jobs"]]
    assert document["changes"] == {"add": sorted(ids), "change": [], "remove": []}
    for job in document["jobs"]:
        assert set(job) >= {"id", "kind", "dataset", "consumer", "platform", "inputs", "trigger"}
    assert ids.index("ingest:shop.orders") < ids.index("deliver:shop.a:orders")
    assert ferry("apply", "--model", root).code == 0
    assert json.loads(ferry("plan", "--model", root, "--json").out)["changes"] == {
        "add": [], "change": [], "remove": []}
    assert "nothing to apply" in ferry("apply", "--model", root).out

    # Deliver to b, then remove b and add c; the ledger ingest moves with its data size.
    assert ferry("run", "shop.b", "--model", root).code == 0
    make(tmp_path, ["a", "c"])
    changes = json.loads(ferry("plan", "--model", root, "--json").out)["changes"]
    assert changes["add"] == ["deliver:shop.c:orders"]
    assert changes["remove"] == ["deliver:shop.b:orders"]
    assert "ingest:shop.orders" in changes["change"]  # 1,500 rows now: planned on spark
    applied = ferry("apply", "--model", root)
    assert "1 added, " in applied.out and "1 removed" in applied.out
    with duckdb.connect(str(root / "out" / "b.duckdb"), read_only=True) as db:
        assert db.execute("select count(*) from orders").fetchall() == [(1500,)]  # kept
    text = ferry("plan", "--model", root)
    assert "(up to date)" in text.out and "spark" in text.out
