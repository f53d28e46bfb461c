"""`GET /api/v1/events`: finished runs and published versions as CloudEvents over SSE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dataferry.broker.graph import build_graph, select
from dataferry.broker.runner import run_jobs
from dataferry.engine.context import RunContext
from dataferry.server import events_api
from tests.server.conftest import add_user, bearer


def events_of(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, CloudEvent) pairs of an SSE body."""
    out = []
    for frame in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines()
                      if ": " in line and not line.startswith(":"))
        if "data" in fields:
            out.append((fields["id"], json.loads(fields["data"])))
    return out


def test_runs_and_versions_stream_as_cloudevents(client: TestClient, context: RunContext,
                                                 auth: Any, login: Any,
                                                 model_root: Path) -> None:
    add_user(auth, "ana", "member")
    token = login("ana").json()["access_token"]
    assert client.get("/api/v1/events", params={"timeout": 0.1}).status_code == 401
    graph = build_graph(context.index)
    run_jobs(context, select(graph, context.index, ["shop.orders"], downstream=False))
    replay = client.get("/api/v1/events", headers=bearer(token),
                        params={"since_start": True, "timeout": 1.5})
    assert replay.status_code == 200
    assert replay.headers["content-type"].startswith("text/event-stream")
    events = events_of(replay.text)
    kinds = [(e["type"], e["source"]) for _, e in events]
    assert ("io.dataferry.run.succeeded", f"/runs/{events[0][1]['data']['run']}") in kinds
    published = next(e for _, e in events
                     if e["type"] == "io.dataferry.dataset.version.published")
    assert published["specversion"] == "1.0" and published["source"] == "/datasets/shop.orders"
    assert published["data"]["version"] == 1 and published["data"]["rows"] == 50
    assert len(published["data"]["manifest_hash"]) == 64

    # A client that reconnects with Last-Event-ID gets only what came after.
    last = events[-1][0]
    assert events_of(client.get("/api/v1/events", headers={**bearer(token),
                                "Last-Event-ID": last}, params={"timeout": 1.2}).text) == []
    run_jobs(context, select(graph, context.index, ["shop.mirror"], downstream=False))
    later = events_of(client.get("/api/v1/events", headers={**bearer(token),
                                 "Last-Event-ID": last}, params={"timeout": 1.5}).text)
    assert {e["subject"] for _, e in later} >= {"deliver:shop.mirror:orders",
                                                "transform:shop.totals"}
    assert all(e["type"] != "io.dataferry.run.failed" for _, e in later)


def test_a_last_event_id_this_stream_never_sent_starts_from_now(
        client: TestClient, context: RunContext, auth: Any, login: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_api, "POLL_SECONDS", 0.05)
    add_user(auth, "ana", "member")
    token = login("ana").json()["access_token"]
    graph = build_graph(context.index)
    run_jobs(context, select(graph, context.index, ["shop.orders"], downstream=False))
    for bad in ("run-1", "abc", "-3", "1.5", "9" * 40, ""):
        answer = client.get("/api/v1/events", headers={**bearer(token), "Last-Event-ID": bad},
                            params={"timeout": 0.3})
        assert answer.status_code == 200, bad
        assert events_of(answer.text) == [], bad  # not a replay of the history, not an error
