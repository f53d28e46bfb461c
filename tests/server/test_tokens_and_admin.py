"""Tokens (expiry, revocation, disabling), admin routes, errors, and secrets kept secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dataferry.server.auth import Auth
from tests.conftest import FakeClock
from tests.server.conftest import PASSWORD, add_user, bearer


def _token(login: Callable[..., Any], name: str) -> str:
    response = login(name)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_an_access_token_expires_after_12_hours(auth: Auth, client: TestClient,
                                                login: Callable[..., Any],
                                                clock: FakeClock) -> None:
    add_user(auth, "ana")
    token = _token(login, "ana")
    clock.advance(12 * 3600 - 1)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    clock.advance(1)
    expired = client.get("/api/v1/me", headers=bearer(token))
    assert expired.status_code == 401 and expired.headers["WWW-Authenticate"] == "Bearer"


def test_logout_revokes_only_the_presented_token(auth: Auth, client: TestClient,
                                                 login: Callable[..., Any]) -> None:
    add_user(auth, "ana")
    first, second = _token(login, "ana"), _token(login, "ana")
    assert client.post("/api/v1/auth/logout", headers=bearer(first)).status_code == 204
    assert client.get("/api/v1/me", headers=bearer(first)).status_code == 401
    assert client.get("/api/v1/me", headers=bearer(second)).status_code == 200


def test_api_tokens_are_created_used_listed_and_revoked(auth: Auth, client: TestClient,
                                                        login: Callable[..., Any],
                                                        clock: FakeClock) -> None:
    add_user(auth, "root", "admin")
    add_user(auth, "ci")
    admin = bearer(_token(login, "root"))
    made = client.post("/api/v1/tokens", headers=admin,
                       json={"name": "nightly", "user": "ci", "expires_in_days": 7,
                             "scopes": ["read", "tokens"]})
    assert made.status_code == 201, made.text
    secret, token_id = made.json()["token"], made.json()["id"]
    me = client.get("/api/v1/me", headers=bearer(secret)).json()
    assert me["username"] == "ci" and me["scopes"] == ["read", "tokens"]
    listed = client.get("/api/v1/tokens", headers=admin).json()
    assert {t["id"] for t in listed} >= {token_id}
    assert all("token" not in t for t in listed)
    assert [t["name"] for t in client.get("/api/v1/tokens", headers=bearer(secret)).json()] \
        == ["nightly"]  # a member sees only its own
    # a scoped token cannot mint a broader one
    assert client.post("/api/v1/tokens", headers=bearer(secret),
                       json={"name": "more"}).status_code == 403
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=admin).status_code == 204
    assert client.get("/api/v1/me", headers=bearer(secret)).status_code == 401
    assert client.delete(f"/api/v1/tokens/{token_id}", headers=admin).status_code == 404
    actions = [e.action for e in auth.audit.entries()]
    assert "token.create" in actions and "token.revoke" in actions


def test_an_api_token_expires(auth: Auth, client: TestClient, clock: FakeClock) -> None:
    add_user(auth, "ci")
    issued = auth.tokens.create_api(auth.accounts.get("ci"), "x", scopes=None, actor="t")
    assert client.get("/api/v1/me", headers=bearer(issued.secret)).status_code == 200
    clock.advance(30 * 86400)
    assert client.get("/api/v1/me", headers=bearer(issued.secret)).status_code == 401


def test_disabling_a_user_kills_its_tokens(auth: Auth, client: TestClient,
                                           login: Callable[..., Any]) -> None:
    add_user(auth, "root", "admin")
    add_user(auth, "bob")
    admin = bearer(_token(login, "root"))
    session = _token(login, "bob")
    api = auth.tokens.create_api(auth.accounts.get("bob"), "bot", actor="t").secret
    response = client.post("/api/v1/users/bob/disable", headers=admin)
    assert response.status_code == 200 and response.json()["disabled"] is True
    for token in (session, api):
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert auth.tokens.store.list(auth.accounts.get("bob").id) == []


def test_admin_routes_need_an_admin(auth: Auth, client: TestClient,
                                    login: Callable[..., Any]) -> None:
    add_user(auth, "root", "admin")
    add_user(auth, "ana")
    member = bearer(_token(login, "ana"))
    assert client.get("/api/v1/users", headers=member).json()["error"]["code"] == "forbidden"
    assert client.get("/api/v1/users").status_code == 401
    admin = bearer(_token(login, "root"))
    added = client.post("/api/v1/users", headers=admin,
                        json={"username": "carl", "role": "viewer", "password": PASSWORD,
                              "email": "Alice@acme.example"})
    assert added.status_code == 201, added.text
    assert "password" not in added.text and "hash" not in added.text
    assert [u["username"] for u in client.get("/api/v1/users", headers=admin).json()] \
        == ["ana", "carl", "root"]
    # carl's e-mail is an owner of team shop in the model: he is its member
    assert client.get("/api/v1/me", headers=bearer(_token(login, "carl"))).json()["teams"] \
        == ["shop"]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"username": "dan", "role": "member", "password": "short"}, 400, "at least 12"),
    ({"username": "dan", "role": "member", "password": "password1234"}, 400, "most common"),
    ({"username": "dan", "role": "member", "password": "dan is my name ok"}, 400, "user name"),
    ({"username": "dan", "role": "member", "password": PASSWORD, "teams": ["nope"]}, 400,
     "no team 'nope'"),
    ({"username": "root", "role": "member", "password": PASSWORD}, 409, "exists already"),
    ({"username": "dan", "role": "boss", "password": PASSWORD}, 422, "role"),
])
def test_bad_new_users_get_clear_errors(auth: Auth, client: TestClient,
                                        login: Callable[..., Any], body: dict[str, Any],
                                        status: int, words: str) -> None:
    add_user(auth, "root", "admin")
    response = client.post("/api/v1/users", headers=bearer(_token(login, "root")), json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]
    assert body["password"] not in response.text


def test_validation_errors_never_echo_the_input(client: TestClient) -> None:
    secret = "hunter2-but-much-longer"
    response = client.post("/api/v1/auth/login", json={"username": ["x"], "password": secret})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert secret not in response.text and "username" in response.text


def test_unknown_routes_and_openapi(client: TestClient) -> None:
    assert client.get("/api/v1/nope").json() == {"error": {"code": "not_found",
                                                           "message": "Not Found"}}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/auth/login", "/api/v1/me", "/api/v1/users", "/api/v1/tokens/{token_id}",
            "/api/v1/me/totp/confirm"} <= set(paths)


def test_passwords_never_reach_responses_audit_or_logs(
        auth: Auth, client: TestClient, login: Callable[..., Any],
        caplog: pytest.LogCaptureFixture, clock: FakeClock) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "my-wrong-guess-password"
    add_user(auth, "root", "admin")
    texts = [login("root").text, login("root", wrong).text, login("ghost", wrong).text]
    admin = bearer(login("root").json()["access_token"])
    new_password = "violet submarine orchestra"
    texts.append(client.post("/api/v1/users", headers=admin, json={
        "username": "eve", "role": "member", "password": new_password}).text)
    auth.accounts.set_password("eve", "another fine passphrase", actor="t")
    texts.append(client.get("/api/v1/users", headers=admin).text)
    audit = json.dumps([e.__dict__ for e in auth.audit.entries()], default=str)
    for secret in (PASSWORD, wrong, new_password, "another fine passphrase"):
        assert secret not in caplog.text
        assert secret not in audit
        assert all(secret not in text for text in texts)
    assert "$argon2id$" not in "".join(texts) + audit
