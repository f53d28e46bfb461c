"""``spark-unsupported``: what cannot run on a Spark platform is a finding, not a failed run.

Static: no Spark is started; sqlglot decides what it can carry from DuckDB's SQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dataferry.broker.graph import build_graph
from dataferry.model.check import check_model
from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model

ECOSYSTEM = """\
ecosystem: acme
zones:
  eu: {}
  small: {platforms: [local]}
platforms:
  local: {engine: duckdb}
  spark: {engine: spark, master: "local[2]", min_rows: 1000}
"""

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
          id: {{type: int64, nullable: false}}
          amount: {{type: decimal(12,2)}}
          tags: {{type: list<string>}}
transformers:
  t:
    {platform}inputs: [shop.orders]
    sql: |
      {sql}
    columns: {{id: int64}}
"""


def findings(model: Callable[..., Path], sql: str, *, platform: str = "",
             zone: str = "eu") -> list[str]:
    team = TEAM.format(sql=sql, platform=f"platform: {platform}\n    " if platform else "")
    root = model({"teams/shop/shop.yaml": team.replace("zone: eu", f"zone: {zone}")},
                 ecosystem=ECOSYSTEM)
    result = check_model(root)
    return [f.as_text() for f in result.findings if f.code == "spark-unsupported"]


def test_sql_sqlglot_carries_is_fine(model: Callable[..., Path]) -> None:
    assert findings(model, "select id from orders order by amount", platform="spark") == []


def test_a_duckdb_function_sqlglot_does_not_know_is_refused_by_name(
        model: Callable[..., Path]) -> None:
    found = findings(model, "select id from orders where list_aggregate(tags, 'count') > 0",
                     platform="spark")
    assert len(found) == 1
    assert "error[spark-unsupported]" in found[0]
    assert "list_aggregate" in found[0] and "platform spark" in found[0]
    assert found[0].startswith("teams/shop/shop.yaml:")


def test_duckdb_only_syntax_is_refused(model: Callable[..., Path]) -> None:
    found = findings(model, "select * exclude (amount, tags) from orders", platform="spark")
    assert len(found) == 1 and "EXCLUDE" in found[0]


def test_by_size_counts_too_unless_the_zone_keeps_the_team_off_spark(
        model: Callable[..., Path]) -> None:
    sql = "select id from orders where list_aggregate(tags, 'count') > 0"
    by_size = findings(model, sql)
    assert len(by_size) == 1 and "min_rows of 1,000" in by_size[0]
    assert findings(model, sql, zone="small") == []
    assert findings(model, sql, platform="local") == []


def test_a_python_transformer_placed_on_spark_is_refused_with_the_reason(
        model: Callable[..., Path]) -> None:
    team = TEAM.format(sql="x", platform="platform: spark\n    ").replace(
        "    sql: |\n      x\n", "    python: code:run\n")
    root = model({"teams/shop/shop.yaml": team, "teams/shop/code.py": "def run(t): return t\n"},
                 ecosystem=ECOSYSTEM)
    found = [f for f in check_model(root).findings if f.code == "spark-unsupported"]
    assert len(found) == 1 and "partitions" in found[0].message
    # by size the planner keeps it on DuckDB instead
    placed = team.replace("platform: spark\n    ", "")
    root = model({"teams/shop/shop.yaml": placed}, ecosystem=ECOSYSTEM)
    assert [f for f in check_model(root).findings if f.code == "spark-unsupported"] == []
    index = ModelIndex(load_model(root).ecosystem)  # type: ignore[arg-type]
    graph = build_graph(index, sizes={"shop.orders": 5000})
    assert graph.jobs["transform:shop.t"].platform == "local"
    assert "does not run on Spark" in graph.jobs["transform:shop.t"].why


def test_a_sql_transformer_big_enough_is_planned_on_spark(model: Callable[..., Path]) -> None:
    root = model({"teams/shop/shop.yaml": TEAM.format(sql="select id from orders",
                                                       platform="")}, ecosystem=ECOSYSTEM)
    index = ModelIndex(load_model(root).ecosystem)  # type: ignore[arg-type]
    job = build_graph(index, sizes={"shop.orders": 5000}).jobs["transform:shop.t"]
    assert job.platform == "spark" and "min_rows" in job.why
