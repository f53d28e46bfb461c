"""The application factory: the scheduler runs for the app's lifetime when asked."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from dataferry.engine.context import RunContext
from dataferry.server.app import create_app
from tests.server.conftest import FAST


def _scheduler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ferry-scheduler"]


def test_the_scheduler_starts_with_the_app_and_stops_with_it(context: RunContext) -> None:
    app = create_app(context, scheduler=True, settings=FAST)
    with TestClient(app) as client:
        assert len(_scheduler_threads()) == 1
        assert client.get("/api/v1/me").status_code == 401
    assert _scheduler_threads() == []


def test_without_the_scheduler_no_thread_starts(context: RunContext) -> None:
    with TestClient(create_app(context, settings=FAST)):
        assert _scheduler_threads() == []
