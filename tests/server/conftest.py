"""Fixtures for server tests: a small model whose metadata DB is SQLite or PostgreSQL,
the app over it with a fake clock and cheap argon2, and helpers to log in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dataferry.engine.context import RunContext
from dataferry.metadata import Metadata, open_metadata
from dataferry.model.load import load_model
from dataferry.server.app import create_app
from dataferry.server.auth import Auth, AuthSettings
from tests.broker.small_model import make_shop
from tests.conftest import require_service
from tests.connectors.pg_helpers import temporary_database as postgres_database
from tests.metadata.conftest import FakeClock

BACKENDS = ["sqlite", "postgres"]
PASSWORD = "tangerine ferry lighthouse"
FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty metadata database, dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'home' / 'ferry.db'}"
        return
    require_service("postgres")
    with postgres_database() as pg_url:
        yield pg_url


@pytest.fixture
def db(url: str) -> Iterator[Metadata]:
    with open_metadata(url) as opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def model_root(tmp_path: Path) -> Path:
    """The shop model (team ``shop``, owner alice@acme.example) on the default SQLite DB."""
    return make_shop(tmp_path / "model")


@pytest.fixture
def context(model_root: Path) -> Iterator[RunContext]:
    context = RunContext.from_loaded(load_model(model_root))
    yield context
    context.close()


@pytest.fixture
def auth(context: RunContext, clock: FakeClock) -> Auth:
    """The services of the app below (same DB, same clock): for setting up users."""
    return Auth.for_context(context, FAST, clock)


@pytest.fixture
def client(context: RunContext, clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(context, settings=FAST, now=clock)
    with TestClient(app, client=("10.0.0.1", 40000)) as test_client:
        yield test_client


def add_user(auth: Auth, name: str, role: str = "member", **options: Any) -> None:
    auth.accounts.add(name, role, options.pop("password", PASSWORD), actor="test", **options)


@pytest.fixture
def login(client: TestClient) -> Callable[..., Any]:
    """``login("ana")`` -> the response; the cookie is dropped so only headers count."""

    def run(name: str, password: str = PASSWORD, totp: str | None = None,
            via: TestClient | None = None) -> Any:
        body = {"username": name, "password": password}
        if totp is not None:
            body["totp"] = totp
        response = (via or client).post("/api/v1/auth/login", json=body)
        (via or client).cookies.clear()
        return response

    return run


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
