"""Schemathesis over the Delta Sharing routes of a real ``ferry serve`` on loopback, from
the OpenAPI document it serves (``/delta-sharing/openapi.json``): with a valid share
token, then without one, no request gets a 5xx, every answer conforms to the document,
and every 4xx has the protocol's error shape ``{"errorCode", "message"}``.

Half the cases name the share, schema and table the token opens (so queries, versions,
timestamps, hints and change feeds are fuzzed past the 404 of an unknown table).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dataferry.cli.main import invoke
from tests.server.live import Served, ferry_serve
from tests.sharing.partner_model import make_partner_model

pytestmark = pytest.mark.security

EXAMPLES = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck))
OPENED = {"share": "shop__mirror", "schema": "shop", "table": "orders"}


def the_protocol_error_shape(ctx: Any, response: Any, case: Case) -> bool:
    """A 4xx (but to HEAD, which has no body) is ``{"errorCode": str, "message": str}``."""
    if 400 <= response.status_code < 500 and case.method.upper() != "HEAD":
        body = json.loads(response.content)
        assert isinstance(body, dict) and set(body) == {"errorCode", "message"}, body
        assert all(isinstance(v, str) and v for v in body.values()), body
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, the_protocol_error_shape]


@dataclass(frozen=True)
class Sharing:
    """A running ``ferry serve``, a share token of shop.mirror, and the server's log."""

    server: Served
    token: str
    log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sharing]:
    root = make_partner_model(tmp_path_factory.mktemp("fuzz") / "model")
    with ferry_serve(root) as server:
        profile = root.parent / "mirror.share"
        assert invoke(["share", "create", "shop.mirror", "--endpoint", server.url, "--out",
                       str(profile), "--model", str(root)]) == 0
        yield Sharing(server, json.loads(profile.read_text())["bearerToken"],
                      root.parent / f"serve-{server.port}.log")


def _operations(url: str) -> list[APIOperation]:
    schema = schemathesis.openapi.from_url(f"{url}/delta-sharing/openapi.json")
    schema.config.update(base_url=url)
    return [result.ok() for result in schema.get_all_operations()]


def _cases(operation: APIOperation, token: str | None) -> st.SearchStrategy[Case]:
    """Valid and invalid requests; half of them (``opened``) with the share, schema and
    table the token opens and the token itself (``token``: None, no token at all)."""
    generated = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                          operation.as_strategy(GenerationMode.NEGATIVE))

    def opened(case: Case, named: bool) -> Case:
        if named:
            for name in (case.path_parameters or {}).keys() & OPENED.keys():
                case.path_parameters[name] = OPENED[name]
            headers: CaseInsensitiveDict[Any] = CaseInsensitiveDict(case.headers or {})
            headers.pop("Authorization", None)
            if token:
                headers["Authorization"] = f"Bearer {token}"
            case.headers = headers
        return case

    return st.builds(opened, generated, st.booleans())


def _fuzz(operations: list[APIOperation], call: Callable[[Case], Any],
          token: str | None = None) -> None:
    """Up to ``max_examples`` cases of each operation; fails naming every failing one."""
    failures: list[str] = []
    for operation in operations:

        @EXAMPLES
        @given(case=_cases(operation, token))
        def run(case: Case) -> None:
            call(case)

        try:
            run()
        except Exception as error:  # collected: the report names every failing operation
            failures.append(f"{operation.label}: {error}"[:3000])
    assert not failures, "\n\n".join(failures)


def test_the_document_describes_every_sharing_route(served: Sharing) -> None:
    server = served.server
    labels = {op.label for op in _operations(server.url)}
    assert labels == {
        "GET /delta-sharing/shares", "GET /delta-sharing/shares/{share}",
        "GET /delta-sharing/shares/{share}/schemas",
        "GET /delta-sharing/shares/{share}/schemas/{schema}/tables",
        "GET /delta-sharing/shares/{share}/all-tables",
        "GET /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/version",
        "GET /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/metadata",
        "POST /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/query",
        "GET /delta-sharing/shares/{share}/schemas/{schema}/tables/{table}/changes",
        "GET /delta-sharing/files/{token}"}
    # a path under the prefix that is no route answers the protocol's 404 too
    lost = httpx.get(f"{server.url}/delta-sharing/shares/a/b/c/d")
    assert lost.status_code == 404 and set(lost.json()) == {"errorCode", "message"}


def test_no_server_error_and_the_error_shape_with_a_share_token(served: Sharing) -> None:
    _fuzz(_operations(served.server.url),
          lambda case: case.call_and_validate(checks=CHECKS), served.token)
    assert "Traceback" not in served.log.read_text(errors="replace")


def test_no_server_error_and_the_error_shape_without_a_token(served: Sharing) -> None:
    def call(case: Case) -> None:
        response = case.call_and_validate(checks=CHECKS)
        if "/files/" not in case.formatted_path:
            assert response.status_code in (400, 401, 404), response.text

    _fuzz(_operations(served.server.url), call)


def test_the_harness_refuses_an_error_of_another_shape() -> None:
    """The check itself: a 4xx in the framework's shape ({"detail"}) fails it."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from fastapi.testclient import TestClient

    from dataferry.sharing.openapi import sharing_openapi

    app = FastAPI()

    @app.get("/delta-sharing/shares")
    def shares() -> JSONResponse:
        return JSONResponse({"detail": "Not Found"}, status_code=400)

    schema = schemathesis.openapi.from_dict(sharing_openapi())
    operation = next(result.ok() for result in schema.get_all_operations()
                     if result.ok().label == "GET /delta-sharing/shares")
    answer = TestClient(app).get("/delta-sharing/shares")
    with pytest.raises(BaseExceptionGroup) as caught:
        operation.Case(query={}).validate_response(answer, checks=[the_protocol_error_shape])
    assert any("the_protocol_error_shape" in str(e) for e in caught.value.exceptions)
