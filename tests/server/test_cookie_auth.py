"""The ``ferry_session`` cookie: a login session for pages and for reading the API, never
for changing anything through ``/api/v1`` (CSRF), and never an API token in disguise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dataferry.server.auth import Auth
from tests.server.conftest import PASSWORD, add_user, bearer

pytestmark = pytest.mark.security


def _cookie_session(client: TestClient, name: str) -> str:
    """Log in as a browser would: the cookie is kept, and the token returned."""
    response = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert client.cookies.get("ferry_session")
    return str(response.json()["access_token"])


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_cross_site_form_with_the_admins_cookie_cannot_disable_a_user(
        auth: Auth, client: TestClient, method: str) -> None:
    """What a same-site page could make the admin's browser send: the cookie and a form."""
    add_user(auth, "root", "admin")
    add_user(auth, "bob")
    _cookie_session(client, "root")
    forged = client.request(method, "/api/v1/users/bob/disable", data={"confirm": "yes"},
                            headers={"Origin": "http://evil.example"})
    assert forged.status_code in (401, 405), forged.text
    if method == "POST":
        assert forged.status_code == 401
        assert "only for GET" in forged.json()["error"]["message"]
    assert auth.accounts.get("bob").disabled is False
    assert client.get("/api/v1/me").status_code == 200  # the cookie still reads


def test_the_same_request_with_the_bearer_token_works(auth: Auth, client: TestClient) -> None:
    add_user(auth, "root", "admin")
    add_user(auth, "bob")
    token = _cookie_session(client, "root")
    client.cookies.clear()
    done = client.post("/api/v1/users/bob/disable", headers=bearer(token))
    assert done.status_code == 200 and done.json()["disabled"] is True


def test_no_unsafe_api_route_takes_the_cookie(auth: Auth, client: TestClient) -> None:
    """Every POST/PUT/PATCH/DELETE of /openapi.json, with a live admin session cookie and
    nothing else, is refused before it does anything."""
    add_user(auth, "root", "admin")
    _cookie_session(client, "root")
    before = len(auth.audit.entries())
    paths = client.get("/openapi.json").json()["paths"]
    seen = 0
    for path, operations in paths.items():
        if not path.startswith("/api/v1") or path in ("/api/v1/auth/login",
                                                       "/api/v1/agent/register"):
            continue  # the ways in: a password, an agent's one-time enrollment token
        for method in (m.upper() for m in operations if m.upper() != "GET"):
            url = (path.replace("{name}", "root").replace("{token_id}", "1")
                   .replace("{agent_id}", "1").replace("{agent_job_id}", "1"))
            refused = client.request(method, url, json={})
            assert refused.status_code == 401, (method, path, refused.text)
            seen += 1
    assert seen >= 8
    assert len(auth.audit.entries()) == before  # nothing happened, not even a denial
    assert client.get("/api/v1/me").status_code == 200  # the session was not logged out


def test_an_api_token_in_the_session_cookie_opens_no_page(
        auth: Auth, client: TestClient, login: Callable[..., Any]) -> None:
    """Pages are for login sessions; a (scoped) API token would slip its scopes there."""
    add_user(auth, "root", "admin")
    api = auth.tokens.create_api(auth.accounts.get("root"), "ci", scopes=["read"],
                                 actor="t").secret
    client.cookies.set("ferry_session", api)
    for path in ("/", "/admin/users", "/admin/tokens"):
        page = client.get(path, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login"), path
    session = login("root").json()["access_token"]
    client.cookies.set("ferry_session", session)
    assert client.get("/admin/users", follow_redirects=False).status_code == 200
