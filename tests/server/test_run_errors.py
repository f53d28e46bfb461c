"""Row values never leave row authorization through run errors (issue 11, point 1).

A model whose runs fail with row values in their errors, run through the real runner:

- ``ingest:shop.customers``: ``accepted_values`` on the masked, pii ``email`` fails on a
  known e-mail address (the check's examples hold the key and the address);
- ``ingest:shop.payments``: a value that does not fit its declared type (the message
  names the value and the row's key);
- ``deliver:marketing.crm:people``: a real PostgreSQL sink table made beforehand with a
  CHECK constraint, so the insert fails with ``Failing row contains (...)``.

Then every place a run is shown is read as vic (a viewer, whose e-mail is even an owner's)
and zed (a member of no team): ``GET /runs``, ``/runs/{id}``, the run pages, the event
stream, a real webhook receiver and OpenLineage. None of the values or keys may appear. erin (team
marketing, whose consumer receives customers with ``email`` masked) sees the examples
with ``email`` as the deliveries' keyed hash, and the sink error's detail; alice (shop's
owner) and the admin see the raw example. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from dataferry.broker.graph import build_graph
from dataferry.broker.runner import run_jobs
from dataferry.engine.context import RunContext
from dataferry.engine.deliver import mask_key
from dataferry.events.notifier import Notifier
from dataferry.model.load import load_model
from dataferry.server.app import create_app
from dataferry.server.auth import Auth
from tests.conftest import write_files
from tests.connectors.pg_helpers import temporary_database
from tests.events.test_notify import Receiver
from tests.server.conftest import FAST, empty_postgres, use_metadata
from tests.server.test_events import events_of
from tests.server.test_ui import ui_login

pytestmark = pytest.mark.security

PASSWORD = "quartz harbor wind 2026"
EMAIL = "mallory.leak@secret.example"
CUSTOMER_ID = 7730419
NAME = "Mallory Leakwell"
PAYMENT_ID = 8840527
BAD_AMOUNT = "LEAKY-AMOUNT-3141"
VALUES = [EMAIL, str(CUSTOMER_ID), NAME, "Leakwell", str(PAYMENT_ID), BAD_AMOUNT]
"""What may not reach anyone without access to the rows."""

USERS = {
    "admin": {"role": "admin"},
    "alice": {"role": "member", "email": "alice@acme.example"},
    "erin": {"role": "member", "email": "erin@acme.example"},
    "dana": {"role": "member", "email": "dana@acme.example"},
    "ada": {"role": "member", "email": "ada@acme.example"},
    "zed": {"role": "member", "email": "zed@elsewhere.example"},
    "vic": {"role": "viewer", "email": "alice@acme.example"},
}
OUTSIDERS = ("vic", "zed")

SHOP = """\
team: shop
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: sqlite
    path: shop.db
    datasets:
      customers:
        table: customers
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          name: {type: string}
          email: {type: string, pii: true}
        checks:
          - accepted_values: {column: email, values: [ok@acme.example]}
      people:
        table: people
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          name: {type: string}
          email: {type: string}
      payments:
        table: payments
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          amount: {type: int64}
transformers:
  numbers:
    inputs: [shop.people]
    sql: select cast(name as integer) as n from people where id > 1
    columns: {n: int64}
"""

MARKETING = """\
team: marketing
zone: eu
owners: [erin@acme.example]
consumers:
  crm:
    sink: {{kind: postgres, dsn: "{dsn}"}}
    datasets:
      - {{ref: shop.customers, mask: [email]}}
      - {{ref: shop.people, mode: merge, mask: [email]}}
    notify:
      - webhook: {hook}/crm
"""

RESEARCH = """\
team: research
zone: eu
owners: [dana@acme.example]
consumers:
  lab:
    sink: {kind: duckdb, path: out/lab.duckdb}
    datasets:
      - {ref: shop.customers, where: "id > 0"}
"""

ADS = """\
team: ads
zone: eu
owners: [ada@acme.example]
consumers:
  banner:
    sink: {kind: duckdb, path: out/banner.duckdb}
    datasets:
      - {ref: shop.customers, columns: [id, name]}
"""

JOBS = ["ingest:shop.customers", "ingest:shop.payments", "ingest:shop.people",
        "deliver:marketing.crm:people", "transform:shop.numbers"]
FAILED = ["ingest:shop.customers", "ingest:shop.payments", "deliver:marketing.crm:people",
          "transform:shop.numbers"]


def make_model(root: Path, sink_dsn: str, hook: str) -> Path:
    write_files(root, {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n"
                                     f"openlineage: {{url: '{hook}'}}\n",
                       "teams/shop/shop.yaml": SHOP,
                       "teams/research/research.yaml": RESEARCH,
                       "teams/ads/ads.yaml": ADS,
                       "teams/marketing/marketing.yaml": MARKETING.format(dsn=sink_dsn,
                                                                          hook=hook)})
    with sqlite3.connect(root / "shop.db") as db:
        for table in ("customers", "people"):
            db.execute(f"create table {table} (id integer primary key, name text, email text)")
            db.executemany(f"insert into {table} values (?, ?, ?)",
                           [(1, "Ann", "ok@acme.example"), (CUSTOMER_ID, NAME, EMAIL)])
        db.execute("create table payments (id integer primary key, amount text)")
        db.executemany("insert into payments values (?, ?)",
                       [(1, "10"), (PAYMENT_ID, BAD_AMOUNT)])
    db.close()
    # The consumer's table exists already, with a rule the delivered rows break.
    with psycopg.connect(sink_dsn, autocommit=True) as sink:
        sink.execute("create table people (id bigint primary key, name text, email text, "
                     "constraint people_name_rule check (name not like 'Mallory%'))")
    return root


class World:
    """The app after the runs, a bearer-token client per user and the webhook's bodies."""

    def __init__(self, context: RunContext, client: TestClient, tokens: dict[str, str],
                 receiver: Receiver) -> None:
        self.context, self.client, self.tokens, self.receiver = context, client, tokens, receiver
        self.browsers: dict[str, TestClient] = {}

    def get(self, user: str, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params,
                                   headers={"Authorization": f"Bearer {self.tokens[user]}"})
        assert response.status_code == 200, (user, path, response.text)
        return response

    def run_of(self, job: str) -> dict[str, Any]:
        runs = self.get("admin", "/api/v1/runs", job=job).json()["items"]
        assert runs and runs[0]["status"] == "failed", runs
        return dict(runs[0])

    def page(self, user: str, path: str) -> str:
        if user not in self.browsers:  # one session per user: logins are rate-limited
            browser = TestClient(self.client.app, follow_redirects=False)
            assert ui_login(browser, user, PASSWORD).status_code == 303
            self.browsers[user] = browser
        response = self.browsers[user].get(path)
        assert response.status_code == 200, response.text
        return response.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, module_postgres: str | None
          ) -> Iterator[World]:
    receiver = Receiver()
    with temporary_database() as sink_dsn:
        root = make_model(tmp_path_factory.mktemp("run-errors") / "model", sink_dsn,
                          receiver.url)
        if module_postgres is not None:
            empty_postgres(module_postgres)
            use_metadata(root, module_postgres)
        context = RunContext.from_loaded(load_model(root))
        graph = build_graph(context.index, everything=True)
        results = run_jobs(context, [graph.jobs[job] for job in JOBS], attempts=1)
        assert [r.status for r in results] == ["failed", "failed", "succeeded", "failed",
                                               "failed"]
        notifier = Notifier(context, patience=0)
        notifier.run_once()  # a new target starts after the events there are: none yet
        for job in ("ingest:shop.customers", "deliver:marketing.crm:people"):
            run_jobs(context, [graph.jobs[job]], attempts=1)
        notifier.run_once()
        notifier.close()
        auth = Auth.for_context(context, FAST)
        for name, options in USERS.items():
            auth.accounts.add(name, options["role"], PASSWORD, actor="test",
                              email=options.get("email"))
        with TestClient(create_app(context, settings=FAST)) as client:
            tokens = {}
            for name in USERS:
                response = client.post("/api/v1/auth/login",
                                       json={"username": name, "password": PASSWORD})
                assert response.status_code == 200, response.text
                tokens[name] = response.json()["access_token"]
            client.cookies.clear()
            yield World(context, client, tokens, receiver)
        context.close()
    receiver.server.shutdown()


def leaked(text: str) -> list[str]:
    return [value for value in VALUES if value in text]


def test_the_runs_failed_with_row_values_in_their_detail(world: World) -> None:
    """The setup works: the values are in the detail, where the owners look."""
    customers = world.get("admin", f"/api/v1/runs/{world.run_of('ingest:shop.customers')['id']}")
    assert EMAIL in customers.json()["detail"]
    payments = world.get("admin", f"/api/v1/runs/{world.run_of('ingest:shop.payments')['id']}")
    assert BAD_AMOUNT in payments.json()["detail"]
    sink = world.get("admin", f"/api/v1/runs/{world.run_of('deliver:marketing.crm:people')['id']}")
    assert "Failing row contains" in sink.json()["detail"] and NAME in sink.json()["detail"]
    cast = world.get("admin", f"/api/v1/runs/{world.run_of('transform:shop.numbers')['id']}")
    assert NAME in cast.json()["detail"]  # DuckDB quotes the value it could not convert


def test_the_public_error_names_what_failed_without_values(world: World) -> None:
    customers = world.run_of("ingest:shop.customers")["error"]
    assert customers == ("shop.customers: check accepted_values(email) failed: 1 of 2 rows "
                         "has email not in the accepted values")
    payments = world.run_of("ingest:shop.payments")["error"]
    assert "shop.payments: column 'amount'" in payments and not leaked(payments)
    sink = world.run_of("deliver:marketing.crm:people")["error"]
    assert "check violation (SQLSTATE 23514, constraint people_name_rule" in sink
    assert not leaked(sink)
    transform = world.run_of("transform:shop.numbers")["error"]
    assert transform == "shop.numbers: the transformer's SQL failed (ConversionException)"


@pytest.mark.parametrize("user", OUTSIDERS)
def test_no_value_reaches_those_without_rows_through_the_api(world: World, user: str) -> None:
    listed = world.get(user, "/api/v1/runs", limit=100)
    assert listed.json()["items"] and not leaked(listed.text)
    for job in FAILED:
        run = world.get(user, f"/api/v1/runs/{world.run_of(job)['id']}")
        assert not leaked(run.text), (job, leaked(run.text))
        body = run.json()
        assert body["detail"] is None and body["detail_hidden"] is True
        assert body["log"] and body["error"]
    customers = world.get(user, f"/api/v1/runs/{world.run_of('ingest:shop.customers')['id']}")
    [check] = customers.json()["checks"]
    assert (check["dataset"], check["check"], check["column"], check["failing_rows"]) == (
        "shop.customers", "accepted_values", "email", 1)
    assert check["examples"] is None and "may not see the rows" in check["examples_note"]


@pytest.mark.parametrize("user", OUTSIDERS)
def test_no_value_reaches_those_without_rows_through_the_pages(world: World, user: str) -> None:
    listed = world.page(user, "/runs")
    assert "ingest:shop.customers" in listed and not leaked(listed)
    for job in FAILED:
        page = world.page(user, f"/runs/{world.run_of(job)['id']}")
        assert "More detail exists" in page and not leaked(page), (job, leaked(page))


@pytest.mark.parametrize("user", OUTSIDERS)
def test_no_value_reaches_the_event_stream(world: World, user: str) -> None:
    body = world.get(user, "/api/v1/events", since_start=True, timeout=1.0).text
    failed = [event for _, event in events_of(body) if event["type"].endswith("run.failed")]
    assert {event["subject"] for event in failed} >= set(FAILED)
    assert not leaked(body)


def test_no_value_reaches_the_consumers_webhook_or_openlineage(world: World) -> None:
    events = world.receiver.events("/crm")
    subjects = {event["subject"] for event in events if event["type"].endswith("run.failed")}
    assert subjects == {"ingest:shop.customers", "deliver:marketing.crm:people"}
    lineage = world.receiver.events("/api/v1/lineage")
    failed = [event for event in lineage if event["eventType"] == "FAIL"]
    assert {event["job"]["name"] for event in failed} == {
        "ingest:shop.customers", "deliver:marketing.crm:people"}
    assert all(event["run"]["facets"]["errorMessage"]["message"] for event in failed)
    assert not leaked(repr(world.receiver.received))


def test_a_consumer_sees_the_examples_as_its_delivery_shows_the_rows(world: World) -> None:
    run = world.get("erin", f"/api/v1/runs/{world.run_of('ingest:shop.customers')['id']}")
    [check] = run.json()["checks"]
    hashed = hmac.new(mask_key(world.context.store.home), EMAIL.encode(),
                      hashlib.sha256).hexdigest()
    assert check["examples"] == [{"id": CUSTOMER_ID, "email": hashed}]
    assert re.fullmatch(r"[0-9a-f]{64}", str(hashed))
    delivered = world.get("erin", "/api/v1/datasets/shop.people/rows").json()["rows"]
    assert hashed in {row["email"] for row in delivered}  # the very hash its rows show
    assert run.json()["detail"] is None and run.json()["detail_hidden"] is True
    assert EMAIL not in run.text
    page = world.page("erin", f"/runs/{world.run_of('ingest:shop.customers')['id']}")
    assert hashed in page and EMAIL not in page


def test_a_grant_shows_its_own_columns_only_and_nothing_under_a_filter(world: World) -> None:
    path = f"/api/v1/runs/{world.run_of('ingest:shop.customers')['id']}"
    [narrow] = world.get("ada", path).json()["checks"]
    assert narrow["examples"] == [{"id": CUSTOMER_ID}]  # its consumer gets no email
    filtered = world.get("dana", path)
    [check] = filtered.json()["checks"]
    assert check["examples"] is None and "where" in check["examples_note"]
    for user in ("ada", "dana"):
        assert EMAIL not in world.get(user, path).text
        assert EMAIL not in world.page(user, path.removeprefix("/api/v1"))


def test_the_operator_on_the_host_sees_the_detail(world: World,
                                                  ferry: Callable[..., Any]) -> None:
    run_id = world.run_of("ingest:shop.customers")["id"]
    shown = ferry("runs", str(run_id), "--model", world.context.root, "--json")
    assert shown.code == 0, shown
    run = json.loads(shown.out)
    assert EMAIL in run["detail"] and run["checks"][0]["examples"] == [
        {"id": CUSTOMER_ID, "email": EMAIL}]
    listed = ferry("runs", "--model", world.context.root, "--json")
    assert not leaked(listed.out)  # the list shows the public summaries


def test_the_consumer_team_sees_its_delivery_error_in_full(world: World) -> None:
    run_id = world.run_of("deliver:marketing.crm:people")["id"]
    for user in ("erin", "alice", "admin"):
        body = world.get(user, f"/api/v1/runs/{run_id}").json()
        assert "Failing row contains" in body["detail"] and body["detail_hidden"] is False
        assert any("Failing row contains" in line["message"] for line in body["log"])
    assert "Failing row contains" in world.page("erin", f"/runs/{run_id}")


def test_owners_and_admins_see_the_raw_examples(world: World) -> None:
    run_id = world.run_of("ingest:shop.customers")["id"]
    for user in ("alice", "admin"):
        body = world.get(user, f"/api/v1/runs/{run_id}").json()
        [check] = body["checks"]
        assert check["examples"] == [{"id": CUSTOMER_ID, "email": EMAIL}]
        assert EMAIL in body["detail"] and not body["detail_hidden"]
        assert EMAIL in world.page(user, f"/runs/{run_id}")
