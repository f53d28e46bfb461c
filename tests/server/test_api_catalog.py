"""The catalog API over the demo ecosystem: what each kind of user may see and do.

The demo (acme: shop, finance, marketing, research) runs once per module; users:
admin, alice (shop's owner by e-mail), erin (marketing: its consumer receives
shop.customers with email masked), dana (research: receives shop.orders where amount > 0),
zed (a member of a team with nothing) and vic (a viewer). Every test runs with the
metadata DB on SQLite and on PostgreSQL (``backend`` in conftest): the PostgreSQL server
works on a copy of the demo whose ferry.yaml points at this module's database, so it
starts without the demo's run history.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dataferry.cli.demo import run_demo
from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.server.app import create_app
from dataferry.server.auth import Auth
from tests.server.conftest import FAST, use_metadata

pytestmark = pytest.mark.security

PASSWORD = "quartz harbor wind 2026"

USERS = {
    "admin": {"role": "admin"},
    "alice": {"role": "member", "email": "alice@acme.example"},
    "erin": {"role": "member", "email": "erin@acme.example"},
    "dana": {"role": "member", "email": "dana@acme.example"},
    "zed": {"role": "member", "email": "zed@elsewhere.example"},
    "vic": {"role": "viewer", "email": "alice@acme.example"},  # a viewer sees no rows
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "acme"
    assert run_demo(root, 20) == 0
    return root


@pytest.fixture(scope="module")
def server(demo: Path, module_postgres: str | None, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    root = demo
    if module_postgres is not None:
        root = tmp_path_factory.mktemp("demo-postgres") / "acme"
        shutil.copytree(demo, root)
        use_metadata(root, module_postgres)
    context = RunContext.from_loaded(load_model(root))
    assert context.metadata.dialect == ("sqlite" if module_postgres is None else "postgresql")
    auth = Auth.for_context(context, FAST)
    for name, options in USERS.items():
        if auth.users.get(name) is None:
            auth.accounts.add(name, options["role"], PASSWORD, actor="test",
                              email=options.get("email"))
    app = create_app(context, settings=FAST)
    with TestClient(app) as client:
        headers = {}
        for name in USERS:
            response = client.post("/api/v1/auth/login",
                                   json={"username": name, "password": PASSWORD})
            assert response.status_code == 200, response.text
            headers[name] = {"Authorization": f"Bearer {response.json()['access_token']}"}
        client.cookies.clear()
        yield client, headers
    context.close()


def get(server: Any, user: str, path: str, **params: Any) -> Any:
    client, headers = server
    return client.get(path, headers=headers[user], params=params)


def test_everyone_logged_in_sees_the_catalog_and_nobody_else(server: Any) -> None:
    client, _ = server
    assert client.get("/api/v1/datasets").status_code == 401
    for user in USERS:
        listed = get(server, user, "/api/v1/datasets", search="orders")
        assert listed.status_code == 200
        refs = [item["ref"] for item in listed.json()["items"]]
        assert "shop.orders" in refs and all("orders" in r or r for r in refs)
        detail = get(server, user, "/api/v1/datasets/shop.orders").json()
        assert detail["team"] == "shop" and detail["latest"]["version"] == 2
        assert {c["name"] for c in detail["columns"]} >= {"id", "amount"}


def test_rows_follow_the_model(server: Any) -> None:
    owner = get(server, "alice", "/api/v1/datasets/shop.customers/rows", limit=5).json()
    assert owner["rows"] and "@" in owner["rows"][0]["email"]
    receiver = get(server, "erin", "/api/v1/datasets/shop.customers/rows", limit=5).json()
    assert receiver["rows"] and all(re.fullmatch(r"[0-9a-f]{64}", r["email"])
                                    for r in receiver["rows"])
    filtered = get(server, "dana", "/api/v1/datasets/shop.orders/rows", limit=1000).json()
    assert filtered["rows"] and all(float(r["amount"]) > 0 for r in filtered["rows"])
    for user in ("zed", "vic"):
        denied = get(server, user, "/api/v1/datasets/shop.customers/rows")
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "forbidden"
    assert get(server, "admin", "/api/v1/datasets/shop.orders/versions/1/rows",
               limit=2).json()["version"] == 1
    assert get(server, "admin", "/api/v1/datasets/shop.orders/versions/9/rows").status_code == 404
    assert get(server, "admin", "/api/v1/datasets/nope.nothing").status_code == 404


def test_every_route_as_a_user_of_an_unrelated_team(server: Any) -> None:
    """Walk every route of the app as zed: nothing private answers 2xx, nothing is 500."""
    client, headers = server
    private = {"/api/v1/users", "/api/v1/users/{name}/disable", "/api/v1/tokens/{token_id}",
               "/api/v1/datasets/{ref}/rows", "/api/v1/datasets/{ref}/versions/{number}/rows",
               "/api/v1/runs", "/api/v1/replication/{ref}/genesis",
               "/api/v1/replication/{ref}/manifests", "/api/v1/replication/{ref}/head",
               "/api/v1/replication/{ref}/files/{path}", "/api/v1/agents",
               "/api/v1/agents/enrollments", "/api/v1/agents/{agent_id}/revoke"}
    values = {"ref": "shop.customers", "number": "1", "name": "alice", "token_id": "1",
              "run_id": "1", "path": "_sig/genesis.json", "agent_id": "1",
              "agent_job_id": "1"}
    seen = 0
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        if not path.startswith("/api/v1") or path.startswith("/api/v1/auth"):
            continue
        for method in sorted(m.upper() for m in operations):
            url = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], path)
            body = {"job": "ingest:shop.orders"} if path == "/api/v1/runs" else {}
            # Without a timeout the event stream runs until the client goes away.
            params = {"timeout": 0.1} if path == "/api/v1/events" else None
            response = client.request(method, url, headers=headers["zed"], params=params,
                                      json=body if method == "POST" else None)
            seen += 1
            assert response.status_code < 500, (method, path, response.text)
            if (path in private and method != "GET") or path in private - {"/api/v1/runs"}:
                assert response.status_code in (403, 404), (method, path, response.status_code)
    assert seen >= 15


def test_triggering_a_run_needs_the_owning_team(server: Any) -> None:
    client, headers = server
    denied = client.post("/api/v1/runs", headers=headers["erin"],
                         json={"job": "ingest:shop.products"})
    assert denied.status_code == 403
    accepted = client.post("/api/v1/runs", headers=headers["alice"],
                           json={"job": "ingest:shop.products"})
    assert accepted.status_code == 202
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = get(server, "alice", "/api/v1/runs", job="ingest:shop.products").json()["items"]
        if runs and runs[0]["status"] not in ("running", "queued"):
            break
        time.sleep(0.1)
    assert runs[0]["status"] in ("succeeded", "unchanged") and runs[0]["trigger"] == "manual"
    one = get(server, "zed", f"/api/v1/runs/{runs[0]['id']}").json()
    assert one["log"] and one["job"] == "ingest:shop.products"
    assert client.post("/api/v1/runs", headers=headers["alice"],
                       json={"job": "ingest:nope"}).status_code == 400


def test_lineage_plan_teams_and_consumers(server: Any) -> None:
    lineage = get(server, "zed", "/api/v1/datasets/shop.orders/lineage").json()
    labels = {n["id"] for n in lineage["nodes"]}
    assert "dataset:shop.orders" in labels and "consumer:research.lake" in labels
    plan = get(server, "zed", "/api/v1/plan").json()
    assert {"jobs", "changes"} <= set(plan)
    assert any(j["id"] == "ingest:shop.orders" for j in plan["jobs"])
    teams = get(server, "zed", "/api/v1/teams").json()["items"]
    assert {t["name"] for t in teams} == {"shop", "finance", "marketing", "research"}
    consumers = get(server, "zed", "/api/v1/consumers").json()
    assert consumers["total"] >= 4
