"""Schemathesis against the app's /openapi.json, in-process: no request makes a 5xx, and
each response conforms to the schema the app publishes for its status.

Two runs per metadata backend: as an admin with a bearer token (every operation but
logging in and out, which would only end the session being fuzzed), and without
credentials (every operation, logging in included: its rate limits must answer 429,
never fail). A bounded number of examples per operation keeps the whole file well
under a minute. The model is the small shop with one published version, so the row
routes have something to read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from dataferry.broker.graph import build_graph, select
from dataferry.broker.runner import run_jobs
from dataferry.engine.context import RunContext
from dataferry.server import events_api
from dataferry.server.app import create_app
from dataferry.server.auth import Auth, AuthSettings
from tests.server.conftest import PASSWORD

pytestmark = pytest.mark.security

# Generous limits: a fuzzer that fails logins must not lock the accounts it uses.
SETTINGS = AuthSettings(argon2_time_cost=1, argon2_memory_kib=8192, argon2_parallelism=1,
                        account_failures=100_000, ip_failures=100_000)
ADMIN = "fuzz-admin-q7"
EXAMPLES = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],  # no shrinking: report as found
                    suppress_health_check=list(HealthCheck))
CHECKS = [not_a_server_error, response_schema_conformance]
EVENT_SECONDS = 0.05  # the event stream ends after this long in the fuzz runs


class Admin:
    """A bearer token of an admin, minted again whenever a fuzzed request revoked it
    (``DELETE /tokens/{id}`` with a lucky id) or disabled its owner (then a new admin)."""

    def __init__(self, auth: Auth) -> None:
        self.auth = auth
        self.name = ADMIN
        self.secret = ""
        auth.accounts.add(ADMIN, "admin", PASSWORD, actor="test")

    def headers(self) -> dict[str, str]:
        if self.auth.accounts.get(self.name).disabled:
            self.name = f"{ADMIN}-{len(self.auth.accounts.list())}"
            self.auth.accounts.add(self.name, "admin", PASSWORD, actor="test")
            self.secret = ""
        if not self.secret or self.auth.tokens.verify(self.secret) is None:
            self.secret = self.auth.tokens.create_api(
                self.auth.accounts.get(self.name), "fuzz", expires_in=timedelta(days=1),
                actor="test").secret
        return {"Authorization": f"Bearer {self.secret}"}


@pytest.fixture
def fuzzed(context: RunContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Admin]]:
    """The app over the shop model (shop.orders published once) and its admin."""
    monkeypatch.setattr(events_api, "POLL_SECONDS", EVENT_SECONDS / 2)
    graph = build_graph(context.index)
    assert all(r.status == "succeeded"
               for r in run_jobs(context, select(graph, context.index, ["shop.orders"],
                                                 downstream=False)))
    auth = Auth.for_context(context, SETTINGS)
    admin = Admin(auth)
    auth.accounts.add("ana", "member", PASSWORD, actor="test", email="alice@acme.example")
    app = create_app(context, settings=SETTINGS)
    yield app, admin


def operations(app: Any, *, skip: tuple[str, ...] = ()) -> list[APIOperation]:
    """Every operation of the app's /openapi.json, but those labelled in ``skip``."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if op.label not in skip]


def cases(operation: APIOperation) -> st.SearchStrategy[Case]:
    """Valid requests and, where the operation has something to get wrong, invalid ones."""
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    if any(True for _ in operation.iter_parameters()) or operation.body:
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return st.one_of(strategies)


def bounded(case: Case) -> None:
    """Make the event stream end: without ``timeout`` it runs until the client leaves."""
    if case.operation.path.endswith("/events"):
        query = dict(case.query or {})
        timeout = query.get("timeout")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) \
                or not 0 < timeout <= EVENT_SECONDS:
            query["timeout"] = EVENT_SECONDS
        case.query = query


def fuzz(found: list[APIOperation], call: Callable[[Case], Any]) -> None:
    """Run ``call`` on up to ``max_examples`` cases of each operation; fail listing every
    operation that failed (not only the first)."""
    failures: list[str] = []
    for operation in found:

        @EXAMPLES
        @given(case=cases(operation))
        def run(case: Case) -> None:
            bounded(case)
            call(case)

        try:
            run()
        except Exception as error:  # collected: the report names every failing operation
            failures.append(f"{operation.label}: {error}"[:3000])
    assert not failures, "\n\n".join(failures)


def test_no_server_errors_as_an_admin(fuzzed: tuple[Any, Admin]) -> None:
    app, admin = fuzzed
    found = operations(app, skip=("POST /api/v1/auth/login", "POST /api/v1/auth/logout"))
    assert len(found) >= 15
    fuzz(found, lambda case: case.call_and_validate(headers=admin.headers(), checks=CHECKS))


def test_no_server_errors_without_credentials(fuzzed: tuple[Any, Admin]) -> None:
    def call(case: Case) -> None:
        response = case.call_and_validate(checks=CHECKS)
        if case.operation.path.startswith("/api/v1/") and case.operation.label != \
                "POST /api/v1/auth/login":
            assert response.status_code in (400, 401, 404, 405, 422), response.text

    found = operations(fuzzed[0])
    assert any(op.label == "POST /api/v1/auth/login" for op in found)
    fuzz(found, call)


def test_the_fuzzer_reports_a_server_error() -> None:
    """The harness itself: a route that fails on some input is found and named."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/square/{n}")
    def square(n: int) -> dict[str, int]:
        if n > 1000:
            raise RuntimeError("too big")  # a 500, as an unhandled error in the app would be
        return {"n": n * n}

    with pytest.raises(AssertionError, match=r"GET /square/\{n\}"):
        fuzz(operations(app), lambda case: case.call_and_validate(checks=CHECKS))
