"""Token scopes: every /api/v1 route declares one, and a token without it is refused.

The walk reads ``/openapi.json`` (as the authorization walk in test_api_catalog does) and
calls every route with an admin's API token of each scope and with a login session, so a
route added without a scope, or one that forgets to check it, fails here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dataferry.server.auth import Auth
from tests.conftest import FakeClock
from tests.server.conftest import add_user, bearer

pytestmark = pytest.mark.security

SCOPES = ("read", "run", "tokens", "admin")  # docs/api.md's vocabulary, spelled out
SESSION = "session"  # what only a login session may do
OPENAPI_KEY = "x-ferry-scope"
VALUES = {"ref": "shop.orders", "number": "1", "name": "nobody", "token_id": "999999",
          "run_id": "1", "path": "_delta_log/00000000000000000000.json", "agent_id": "999999",
          "agent_job_id": "999999"}
HARMLESS_BODIES = {  # what the walk sends when a route lets it through: changes nothing
    ("POST", "/api/v1/runs"): {"job": "ingest:nope"},
    ("POST", "/api/v1/tokens"): {"name": "walk", "expires_in_days": 1, "scopes": ["tokens"]},
}


def _session(login: Callable[..., Any], name: str) -> str:
    response = login(name)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _api_token(auth: Auth, name: str, scopes: list[str] | None, days: int = 30) -> str:
    return auth.tokens.create_api(auth.accounts.get(name), "t", scopes=scopes, actor="test",
                                  expires_in=timedelta(days=days)).secret


def _operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    paths = client.get("/openapi.json").json()["paths"]
    return [(method.upper(), path, operation) for path, operations in sorted(paths.items())
            for method, operation in sorted(operations.items())
            if path.startswith("/api/v1")]


def _call(client: TestClient, method: str, path: str, token: str) -> Any:
    url = re.sub(r"{(\w+)}", lambda m: VALUES[m.group(1)], path)
    params = {"timeout": 0.1} if path == "/api/v1/events" else None
    body = HARMLESS_BODIES.get((method, path), {}) if method == "POST" else None
    return client.request(method, url, headers=bearer(token), params=params, json=body)


def test_every_route_declares_a_scope_and_refuses_tokens_without_it(
        auth: Auth, client: TestClient, login: Callable[..., Any]) -> None:
    add_user(auth, "root", "admin")
    tokens = {scope: _api_token(auth, "root", [scope]) for scope in SCOPES}
    session = _session(login, "root")
    declared = {}
    for method, path, operation in _operations(client):
        if path == "/api/v1/auth/login":
            assert OPENAPI_KEY not in operation  # the one way in needs nothing
            continue
        if path.startswith("/api/v1/agent/"):  # gateway agents: an agent credential, no user's
            assert OPENAPI_KEY not in operation
            for token in (*tokens.values(), session):
                refused = _call(client, method, path, token)
                assert refused.status_code == (422 if path.endswith("/register") else 401), (
                    method, path, refused.text)
            continue
        needed = operation.get(OPENAPI_KEY)
        assert needed in (*SCOPES, SESSION), f"{method} {path} declares no scope"
        declared[(method, path)] = needed
        for scope, token in tokens.items():
            if scope == needed:
                continue
            refused = _call(client, method, path, token)
            assert refused.status_code == 403, (method, path, scope, refused.text)
            message = refused.json()["error"]["message"]
            assert (f"'{needed}' scope" in message if needed != SESSION
                    else "login session" in message), (method, path, message)
        # with the scope (or as a login session), the scope is no reason to refuse
        holder = tokens.get(needed, session)
        if (method, path) == ("POST", "/api/v1/auth/logout"):
            holder = _api_token(auth, "root", ["tokens"])  # logging out revokes it
        allowed = _call(client, method, path, holder)
        assert allowed.status_code not in (401, 403), (method, path, allowed.text)
        assert allowed.status_code < 500, (method, path, allowed.text)
    assert len(declared) >= 20
    assert {declared[("GET", "/api/v1/datasets/{ref}/rows")], declared[("GET", "/api/v1/me")],
            declared[("GET", "/api/v1/events")]} == {"read"}
    assert declared[("POST", "/api/v1/runs")] == "run"
    assert {declared[("GET", "/api/v1/tokens")], declared[("POST", "/api/v1/tokens")],
            declared[("DELETE", "/api/v1/tokens/{token_id}")]} == {"tokens"}
    assert {declared[("GET", "/api/v1/users")],
            declared[("POST", "/api/v1/users/{name}/disable")]} == {"admin"}
    assert {declared[("POST", "/api/v1/me/totp")], declared[("POST", "/api/v1/me/totp/confirm")],
            declared[("POST", "/api/v1/me/password")]} == {SESSION}


def test_a_read_token_cannot_act_or_take_the_account_over(
        auth: Auth, client: TestClient, login: Callable[..., Any]) -> None:
    """The attacks of issue 11 with a leaked ``read`` token: each is refused, nothing changes."""
    add_user(auth, "alice", email="alice@acme.example")  # owns team shop
    session = _session(login, "alice")
    read = bearer(_api_token(auth, "alice", ["read"]))
    assert client.get("/api/v1/datasets/shop.orders", headers=read).status_code == 200
    attempts = [
        client.post("/api/v1/runs", headers=read, json={"job": "ingest:shop.orders"}),
        client.post("/api/v1/tokens", headers=read,
                    json={"name": "persist", "expires_in_days": 366}),
        client.get("/api/v1/tokens", headers=read),
        client.delete(f"/api/v1/tokens/{auth.tokens.store.list()[-1].id}", headers=read),
        client.post("/api/v1/auth/logout", headers=read),
        client.post("/api/v1/me/totp", headers=read, json={"password": "x"}),
        client.post("/api/v1/me/password", headers=read,
                    json={"password": "x", "new_password": "attacker chose this one"}),
    ]
    assert [a.status_code for a in attempts] == [403] * len(attempts), \
        [a.text for a in attempts]
    assert {t.name for t in auth.tokens.store.list()} == {"login", "t"}  # nothing new, none gone
    assert client.get("/api/v1/me", headers=bearer(session)).status_code == 200
    assert auth.accounts.get("alice").totp_secret_encrypted is None
    assert not [e for e in auth.audit.entries() if e.action == "run.trigger"]


def test_an_admins_read_token_cannot_see_or_mint_other_users_tokens(
        auth: Auth, client: TestClient, login: Callable[..., Any]) -> None:
    add_user(auth, "root", "admin")
    add_user(auth, "bob")
    bobs = _session(login, "bob")
    bobs_id = auth.tokens.store.list(auth.accounts.get("bob").id)[0].id
    for scopes in (["read"], ["tokens"]):
        token = bearer(_api_token(auth, "root", scopes))
        minted = client.post("/api/v1/tokens", headers=token,
                             json={"name": "as-bob", "user": "bob", "scopes": ["read"]})
        assert minted.status_code == 403, minted.text
        assert client.delete(f"/api/v1/tokens/{bobs_id}", headers=token).status_code == 403
        listed = client.get("/api/v1/tokens", headers=token)
        assert listed.status_code == 403 or {t["user"] for t in listed.json()} == {"root"}
    assert client.get("/api/v1/users", headers=token).status_code == 403
    assert client.get("/api/v1/me", headers=bearer(bobs)).status_code == 200
    admin = bearer(_api_token(auth, "root", ["tokens", "admin", "read"]))
    assert {t["user"] for t in client.get("/api/v1/tokens", headers=admin).json()} \
        == {"root", "bob"}
    assert client.post("/api/v1/tokens", headers=admin,
                       json={"name": "as-bob", "user": "bob", "scopes": ["read"]}
                       ).status_code == 201


def test_a_token_cannot_mint_a_token_wider_or_longer_lived_than_itself(
        auth: Auth, client: TestClient, login: Callable[..., Any], clock: FakeClock) -> None:
    add_user(auth, "ci")
    narrow = bearer(_api_token(auth, "ci", ["tokens", "read"], days=30))
    for body, words in [({"name": "all"}, "more scopes"),
                        ({"name": "run", "scopes": ["run"]}, "would add run"),
                        ({"name": "long", "scopes": ["read"], "expires_in_days": 31},
                         "expires_in_days 30 or less")]:
        refused = client.post("/api/v1/tokens", headers=narrow, json=body)
        assert refused.status_code == 403 and words in refused.json()["error"]["message"], \
            refused.text
    made = client.post("/api/v1/tokens", headers=narrow,
                       json={"name": "ok", "scopes": ["read"], "expires_in_days": 30})
    assert made.status_code == 201, made.text
    assert made.json()["scopes"] == ["read"]
    unscoped = bearer(_api_token(auth, "ci", None, days=7))  # all the user's rights
    assert client.post("/api/v1/tokens", headers=unscoped,
                       json={"name": "all", "expires_in_days": 7}).status_code == 201
    assert client.post("/api/v1/tokens", headers=unscoped,
                       json={"name": "all", "expires_in_days": 8}).status_code == 403
    clock.advance(6.5 * 86400)
    late = client.post("/api/v1/tokens", headers=unscoped,
                       json={"name": "x", "expires_in_days": 1})
    assert late.status_code == 403 and "less than a day" in late.text
    session = bearer(_session(login, "ci"))  # a login session: up to the configured maximum
    longest = client.post("/api/v1/tokens", headers=session,
                          json={"name": "year", "expires_in_days": 366})
    assert longest.status_code == 201 and longest.json()["scopes"] is None


@pytest.mark.parametrize("scopes", [["write"], ["read", "runs:trigger"], ["Admin"], []])
def test_unknown_scope_names_are_refused_with_the_vocabulary(
        auth: Auth, client: TestClient, login: Callable[..., Any], scopes: list[str]) -> None:
    add_user(auth, "ana")
    refused = client.post("/api/v1/tokens", headers=bearer(_session(login, "ana")),
                          json={"name": "x", "scopes": scopes})
    assert refused.status_code == 400, refused.text
    assert "read, run, tokens, admin" in refused.json()["error"]["message"]
    assert [t.kind for t in auth.tokens.store.list()] == ["access"]
