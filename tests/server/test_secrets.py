"""Secrets never reach the server's responses, logs, audit log or metadata database.

A model whose PostgreSQL source password and webhook secret come from the environment
runs end to end through the API; then every JSON route, the event stream, the OpenAPI
document, the server's log records and the metadata database's bytes are searched for
the two values.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.server.app import create_app
from dataferry.server.auth import Auth
from tests.conftest import write_files
from tests.connectors.pg_helpers import temporary_database
from tests.server.conftest import FAST

pytestmark = pytest.mark.security

PG_PASSWORD = "pg-Pa55word-never-shown"
HOOK_SECRET = "hook-S3cret-never-shown"
USER_PASSWORD = "quartz harbor wind 2026"

TEAM = """\
team: crm
zone: eu
owners: [alice@acme.example]
sources:
  db:
    kind: postgres
    dsn: {dsn}
    password: ${{env:FERRY_TEST_PG_PASSWORD}}
    datasets:
      accounts:
        table: public.accounts
        primary_key: [id]
        columns:
          id: {{type: int64, nullable: false}}
          name: {{type: string}}
consumers:
  copy:
    sink: {{kind: duckdb, path: out/copy.duckdb}}
    datasets: [{{ref: crm.accounts}}]
    notify:
      - webhook: https://hooks.invalid/crm
        secret: ${{env:FERRY_TEST_HOOK_SECRET}}
"""


def test_no_secret_in_responses_logs_audit_or_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FERRY_TEST_PG_PASSWORD", PG_PASSWORD)
    monkeypatch.setenv("FERRY_TEST_HOOK_SECRET", HOOK_SECRET)
    caplog.set_level(logging.DEBUG)
    with temporary_database() as dsn:
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute("create table accounts (id bigint primary key, name text)")
            db.execute("insert into accounts select g, 'n' || g from generate_series(1, 20) g")
        root = write_files(tmp_path / "model", {
            "ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
            "teams/crm/crm.yaml": TEAM.format(dsn=dsn)})
        context = RunContext.from_loaded(load_model(root))
        auth = Auth.for_context(context, FAST)
        auth.accounts.add("alice", "member", USER_PASSWORD, actor="test",
                          email="alice@acme.example")
        seen: list[str] = []
        with TestClient(create_app(context, settings=FAST)) as client:
            token = client.post("/api/v1/auth/login", json={
                "username": "alice", "password": USER_PASSWORD}).json()["access_token"]
            client.cookies.clear()
            headers = {"Authorization": f"Bearer {token}"}
            for job in ("ingest:crm.accounts", "deliver:crm.copy:accounts"):
                assert client.post("/api/v1/runs", headers=headers,
                                   json={"job": job}).status_code == 202
                _wait_for(client, headers, job)
            paths = ["/api/v1/me", "/api/v1/teams", "/api/v1/datasets",
                     "/api/v1/datasets/crm.accounts", "/api/v1/datasets/crm.accounts/versions",
                     "/api/v1/datasets/crm.accounts/rows", "/api/v1/datasets/crm.accounts/lineage",
                     "/api/v1/consumers", "/api/v1/runs", "/api/v1/plan", "/api/v1/tokens",
                     "/openapi.json"]
            for path in paths:
                response = client.get(path, headers=headers)
                assert response.status_code == 200, (path, response.text)
                seen.append(response.text)
            runs = client.get("/api/v1/runs", headers=headers).json()["items"]
            assert {r["status"] for r in runs} <= {"succeeded", "unchanged"}
            seen += [client.get(f"/api/v1/runs/{r['id']}", headers=headers).text for r in runs]
            seen.append(client.get("/api/v1/events", headers=headers,
                                   params={"since_start": True, "timeout": 1.2}).text)
        seen += [record.getMessage() for record in caplog.records]
        seen += [str(entry) for entry in auth.audit.entries()]
        context.close()
        database = root / ".ferry" / "ferry.db"
        raw = b"".join(p.read_bytes() for p in database.parent.glob("ferry.db*"))
    assert any("crm.accounts" in text for text in seen)  # the search looked at real output
    for secret in (PG_PASSWORD, HOOK_SECRET):
        assert not [text[:200] for text in seen if secret in text]
        assert secret.encode() not in raw


def _wait_for(client: TestClient, headers: dict[str, str], job: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items: list[Any] = client.get("/api/v1/runs", headers=headers,
                                      params={"job": job}).json()["items"]
        if items and items[0]["status"] not in ("running", "queued"):
            assert items[0]["status"] in ("succeeded", "unchanged"), items[0]
            return
        time.sleep(0.1)
    raise AssertionError(f"{job} did not finish")
