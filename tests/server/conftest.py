"""Fixtures for server tests: a small model whose metadata DB is SQLite or PostgreSQL,
the app over it with a fake clock and cheap argon2, and helpers to log in.

Every test that uses the model (``model_root``, ``context``, ``auth``, ``client``,
``login``) or an empty metadata database (``url``, ``db``) runs once per backend:
``backend`` is a module-scoped parameter, so pytest runs a module's SQLite tests, then
its PostgreSQL ones. PostgreSQL gets one throwaway database per module (creating one
per test would cost more than the tests), emptied before each test that asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.server.app import create_app
from dataferry.server.auth import Auth, AuthSettings
from tests.broker.small_model import make_shop
from tests.conftest import FakeClock, require_service
from tests.connectors.pg_helpers import temporary_database as postgres_database

BACKENDS = ["sqlite", "postgres"]
PASSWORD = "tangerine ferry lighthouse"
FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgres``: which metadata database this module's tests use."""
    return str(request.param)


@pytest.fixture(scope="module")
def module_postgres(backend: str) -> Iterator[str | None]:
    """This module's own PostgreSQL database (None on SQLite), dropped after the module."""
    if backend != "postgres":
        yield None
        return
    require_service("postgres")
    with postgres_database() as pg_url:
        yield pg_url


def empty_postgres(pg_url: str) -> None:
    """Delete every row of the metadata tables (not the schema): a fresh database for the
    next test, without the cost of creating one."""
    with psycopg.connect(pg_url, autocommit=True) as connection:
        connection.execute("set lock_timeout = '20s'")  # a leftover run thread: fail, not hang
        tables = [row[0] for row in connection.execute(
            "select tablename from pg_tables where schemaname = 'public' "
            "and tablename <> 'alembic_version'")]
        if tables:
            names = ", ".join(f'"{name}"' for name in tables)
            connection.execute(f"truncate {names} restart identity cascade")


@pytest.fixture
def metadata_url(module_postgres: str | None, tmp_path: Path) -> str:
    """The URL of an empty metadata database for this test (SQLite or PostgreSQL)."""
    if module_postgres is None:
        return f"sqlite:///{tmp_path / 'home' / 'ferry.db'}"
    empty_postgres(module_postgres)
    return module_postgres


@pytest.fixture
def url(metadata_url: str) -> str:
    """The URL of an empty metadata database (the storage tests' name for it)."""
    return metadata_url


def use_metadata(root: Path, url: str | None) -> Path:
    """Point the model in ``root`` at the metadata database ``url`` (None: keep the
    default SQLite file in its home) by adding ``metadata:`` to its ferry.yaml."""
    if url is not None:
        ferry_yaml = root / "ferry.yaml"
        text = ferry_yaml.read_text(encoding="utf-8").rstrip("\n")
        ferry_yaml.write_text(f"{text}\nmetadata: {url}\n", encoding="utf-8")
    return root


@pytest.fixture
def model_root(tmp_path: Path, module_postgres: str | None) -> Path:
    """The shop model (team ``shop``, owner alice@acme.example) with an empty metadata
    DB: the default SQLite file, or this module's PostgreSQL database (emptied)."""
    root = make_shop(tmp_path / "model")
    if module_postgres is not None:
        empty_postgres(module_postgres)
    return use_metadata(root, module_postgres)


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
