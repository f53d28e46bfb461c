"""OpenLineage end to end: every event is valid by the spec's JSON Schema, each run sends a
START before its COMPLETE/FAIL, and the names chain from a source table through the store
to a sink table (what Marquez joins on), with no credential in any of them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from referencing import Registry, Resource

from dataferry.connectors.base import LineageName
from dataferry.connectors.postgres.connection import lineage_server
from dataferry.engine.context import RunContext
from dataferry.events.lineage import LineageNames, openlineage_json
from dataferry.events.notifier import Notifier
from dataferry.metadata import Event
from dataferry.metadata.outbox import RUN_FAILED, RUN_SUCCEEDED
from dataferry.model.load import load_model
from dataferry.model.spec import PostgresSink
from tests.conftest import write_files
from tests.events.test_notify import Receiver, receiver, run_all, shop_with_notify

__all__ = ["receiver"]  # the fixture, for pytest

SPEC = Path(__file__).parent / "openlineage_spec"


def _validator() -> jsonschema.Draft202012Validator:
    schemas = {name: json.loads((SPEC / name).read_text()) for name in
               ("OpenLineage.json", "DatasetVersionDatasetFacet.json",
                "ErrorMessageRunFacet.json")}
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values())
    return jsonschema.Draft202012Validator(schemas["OpenLineage.json"], registry=registry)


VALIDATOR = _validator()
FACETS = {"version": "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json",
          "errorMessage": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json"}


def check_spec(event: dict[str, Any]) -> None:
    """Valid by the spec: the event, and each facet by its own schema."""
    VALIDATOR.validate(event)
    assert datetime.fromisoformat(event["eventTime"]).tzinfo is not None
    facets = [event["run"].get("facets", {})] + [
        d.get("facets", {}) for d in event.get("inputs", []) + event.get("outputs", [])]
    for found in facets:
        for key, facet in found.items():
            schema = VALIDATOR.evolve(schema={"$ref": FACETS[key]})
            schema.validate({key: facet})
            assert facet["_schemaURL"].startswith(FACETS[key])


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def test_lineage_runs_from_the_source_table_through_the_store_to_the_sink(
        tmp_path: Path, receiver: Receiver) -> None:
    root = tmp_path / "model"
    context = shop_with_notify(root, "", ecosystem=f"openlineage: {{url: '{receiver.url}'}}\n")
    notifier = Notifier(context)
    notifier.run_once()
    run_all(context)
    (progress,) = notifier.run_once()
    assert progress.last_error is None, progress
    sent = [json.loads(body) for path, _, body in receiver.received if path == "/api/v1/lineage"]
    for event in sent:
        check_spec(event)

    by_run: dict[str, list[dict[str, Any]]] = {}
    for event in sent:
        by_run.setdefault(event["run"]["runId"], []).append(event)
    assert len(by_run) == 4  # ingest, transform, two deliveries
    for start, end in by_run.values():
        assert (start["eventType"], end["eventType"]) == ("START", "COMPLETE")
        assert start["job"] == end["job"]
        assert start["eventTime"] <= end["eventTime"]
    jobs = {events[-1]["job"]["name"]: events[-1] for events in by_run.values()}

    ingest, transform = jobs["ingest:shop.orders"], jobs["transform:shop.totals"]
    to_orders, to_totals = jobs["deliver:shop.mirror:orders"], jobs["deliver:shop.mirror:totals"]
    assert {e["job"]["namespace"] for e in sent} == {"acme"}
    assert names(ingest["inputs"]) == [(f"sqlite://{(root / 'shop.db').resolve()}", "orders")]
    orders = ("dataferry://acme", "shop.orders")
    totals = ("dataferry://acme", "shop.totals")
    # The chain Marquez draws: each job's output is the next one's input.
    assert names(ingest["outputs"]) == [orders]
    assert names(transform["inputs"]) == [orders] == names(to_orders["inputs"])
    assert names(transform["outputs"]) == [totals] == names(to_totals["inputs"])
    sink = f"duckdb://{(root / 'out' / 'mirror.duckdb').resolve()}"
    assert names(to_orders["outputs"]) == [(sink, "main.orders")]
    assert names(to_totals["outputs"]) == [(sink, "main.totals")]
    assert ingest["outputs"][0]["facets"]["version"]["datasetVersion"] == "1"
    assert to_totals["inputs"][0]["facets"]["version"]["datasetVersion"] == "1"

    (root / "shop.db").rename(root / "gone.db")
    from dataferry.broker.graph import build_graph, select
    from dataferry.broker.runner import run_jobs
    run_jobs(context, select(build_graph(context.index), context.index, ["shop.orders"],
                             downstream=False))
    notifier.run_once()
    start, failed = [json.loads(body) for path, _, body in receiver.received
                     if path == "/api/v1/lineage"][-2:]
    for event in (start, failed):
        check_spec(event)
    assert (start["eventType"], failed["eventType"]) == ("START", "FAIL")
    assert names(failed["inputs"]) == names(ingest["inputs"])  # a failed run still names them
    assert "shop.db" in failed["run"]["facets"]["errorMessage"]["message"]
    notifier.close()
    context.close()


TEAM = """\
team: crm
zone: eu
owners: [bob@acme.example]
sources:
  pg:
    kind: postgres
    dsn: postgresql://loader:hunter2@db.internal:6432/sales?sslmode=require
    password: ${env:PG_PASSWORD}
    datasets:
      accounts: {table: crm.Accounts, columns: {id: int64}}
      joined:
        query: 'with a as (select * from Accounts) select a.id from a join billing."Invoices" using (id)'
        columns: {id: int64}
  my:
    kind: mysql
    dsn: mysql://reader:swordfish@mariadb.internal/shop
    datasets:
      items: {table: items, columns: {id: int64}}
      other: {table: stock.levels, columns: {id: int64}}
  duck:
    kind: duckdb
    path: warehouse.duckdb
    datasets:
      events: {table: raw.events, columns: {id: int64}}
  lite:
    kind: sqlite
    path: app.db
    datasets:
      recent: {query: "select id from orders where id > 0", columns: {id: int64}}
  files:
    kind: files
    path: drops/*.csv
    datasets:
      drops: {columns: {id: int64}}
  api:
    kind: http
    url: https://user:sesame@api.example.com:8443/v2/?api_key=opensesame
    token: ${env:API_TOKEN}
    datasets:
      people: {endpoint: people?page=1, columns: {id: int64}}
consumers:
  pgapp:
    sink: {kind: postgres, dsn: "host=pg.internal port=5433 dbname=app user=w password=hunter3", schema: crm}
    datasets: [crm.accounts]
  myapp:
    sink: {kind: mysql, dsn: "mysql://w:hunter4@my.internal:3307/app"}
    datasets: [{ref: crm.items, table: stock_items}]
  lake:
    sink: {kind: parquet, path: lake}
    datasets: [crm.drops]
  local:
    sink: {kind: sqlite, path: out/local.db}
    datasets: [crm.people]
"""


def test_each_connector_names_what_it_reads_and_writes_without_credentials(
        tmp_path: Path) -> None:
    root = write_files(tmp_path, {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                                  "teams/crm/crm.yaml": TEAM})
    context = RunContext.from_loaded(load_model(root))
    found = LineageNames(context.index, root, "acme")

    def inputs(job: str) -> list[LineageName]:
        return found.of_job(job).inputs

    def outputs(job: str) -> list[LineageName]:
        return found.of_job(job).outputs

    pg = "postgres://db.internal:6432"
    assert inputs("ingest:crm.accounts") == [LineageName(pg, "sales.crm.accounts")]
    assert inputs("ingest:crm.joined") == [LineageName(pg, "sales.public.accounts"),
                                           LineageName(pg, "sales.billing.Invoices")]
    assert inputs("ingest:crm.items") == [LineageName("mysql://mariadb.internal:3306",
                                                      "shop.items")]
    assert inputs("ingest:crm.other") == [LineageName("mysql://mariadb.internal:3306",
                                                      "stock.levels")]
    assert inputs("ingest:crm.events") == [LineageName(f"duckdb://{root / 'warehouse.duckdb'}",
                                                       "raw.events")]
    assert inputs("ingest:crm.recent") == [LineageName(f"sqlite://{root / 'app.db'}", "orders")]
    assert inputs("ingest:crm.drops") == [LineageName("file", str(root / "drops" / "*.csv"))]
    assert inputs("ingest:crm.people") == [LineageName("https://api.example.com:8443",
                                                       "/v2/people")]
    assert outputs("ingest:crm.people") == [LineageName("dataferry://acme", "crm.people")]
    assert outputs("deliver:crm.pgapp:accounts") == [
        LineageName("postgres://pg.internal:5433", "app.crm.accounts")]
    assert outputs("deliver:crm.myapp:stock_items") == [
        LineageName("mysql://my.internal:3307", "app.stock_items")]
    assert outputs("deliver:crm.lake:drops") == [LineageName("file", f"{root / 'lake'}/drops")]
    assert outputs("deliver:crm.local:people") == [
        LineageName(f"sqlite://{root / 'out' / 'local.db'}", "people")]
    assert found.of_job("deliver:crm.gone:people").outputs == []  # no longer in the model

    sent = []
    for run, job in enumerate(["ingest:crm.accounts", "ingest:crm.joined", "ingest:crm.items",
                               "ingest:crm.people", "deliver:crm.pgapp:accounts",
                               "deliver:crm.myapp:stock_items"]):
        event = Event(run, f"run-{run}", RUN_FAILED if run % 2 else RUN_SUCCEEDED, "/runs",
                      job, datetime.now(UTC),
                      {"run": run, "job": job, "read": [], "written": [], "error": "boom"})
        sent += openlineage_json(event, found, datetime.now(UTC))
    text = "\n".join(sent)
    for secret in ("hunter", "swordfish", "sesame", "loader", "reader", "api_key"):
        assert secret not in text
    for event in sent:
        check_spec(json.loads(event))
    context.close()


@given(user=st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12),
       password=st.text(st.characters(categories=["L", "N", "P"]), min_size=6, max_size=20),
       host=st.text("abcxyz019.-", max_size=20).map(lambda text: "h" + text),
       port=st.integers(1, 65535),
       database=st.text("abcxyz019_", max_size=20).map(lambda text: "d" + text))
def test_a_postgres_dsn_names_its_server_and_database_only(
        user: str, password: str, host: str, port: int, database: str) -> None:
    from urllib.parse import quote

    dsn = f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{database}"
    found = lineage_server(PostgresSink(kind="postgres", dsn=dsn))
    assert found == (f"postgres://{host}:{port}", database)


@pytest.mark.parametrize(("dsn", "expected"), [
    ("postgresql:///shop", ("postgres://localhost:5432", "shop")),
    ("host=/var/run/postgresql dbname=shop", ("postgres://localhost:5432", "shop")),
    ("postgresql://a,b:5433/shop", ("postgres://a:5432", "shop")),  # b has port 5433
    ("postgresql://loader@db", ("postgres://db:5432", "loader")),
    ("not a dsn = =", None),
])
def test_libpq_defaults_in_postgres_names(dsn: str, expected: tuple[str, str] | None) -> None:
    assert lineage_server(PostgresSink(kind="postgres", dsn=dsn)) == expected
