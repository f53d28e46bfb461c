"""TOTP enrollment and password changes: a login session and the current password, never
an API token, and a wrong password counts against the login limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dataferry.server.auth import Auth
from dataferry.server.auth.totp import code_at
from tests.conftest import FakeClock
from tests.server.conftest import PASSWORD, add_user, bearer

pytestmark = pytest.mark.security

NEW_PASSWORD = "copper kettle evening tide"


def _session(login: Callable[..., Any], name: str, password: str = PASSWORD) -> dict[str, str]:
    response = login(name, password)
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


def test_an_api_token_cannot_enroll_totp_or_change_the_password(
        auth: Auth, client: TestClient) -> None:
    """Even an API token with all the user's rights: that is how its owner got locked out."""
    add_user(auth, "ana")
    token = bearer(auth.tokens.create_api(auth.accounts.get("ana"), "ci", actor="t").secret)
    attempts = [
        client.post("/api/v1/me/totp", headers=token, json={"password": PASSWORD}),
        client.post("/api/v1/me/totp/confirm", headers=token,
                    json={"code": "123456", "password": PASSWORD}),
        client.post("/api/v1/me/password", headers=token,
                    json={"password": PASSWORD, "new_password": NEW_PASSWORD}),
    ]
    for refused in attempts:
        assert refused.status_code == 403, refused.text
        assert "login session" in refused.json()["error"]["message"]
    user = auth.accounts.get("ana")
    assert user.totp_secret_encrypted is None and not user.totp_enabled
    assert auth.passwords.verify(user.password_hash, PASSWORD)


def test_totp_enrollment_needs_the_current_password(
        auth: Auth, client: TestClient, login: Callable[..., Any], clock: FakeClock) -> None:
    add_user(auth, "ana")
    session = _session(login, "ana")
    assert client.post("/api/v1/me/totp", headers=session).status_code == 422  # no password
    wrong = client.post("/api/v1/me/totp", headers=session, json={"password": "not my password"})
    assert wrong.status_code == 403 and "current password" in wrong.json()["error"]["message"]
    assert auth.accounts.get("ana").totp_secret_encrypted is None
    started = client.post("/api/v1/me/totp", headers=session, json={"password": PASSWORD})
    assert started.status_code == 201, started.text
    secret = started.json()["secret"]
    code = code_at(secret, clock())
    unproven = client.post("/api/v1/me/totp/confirm", headers=session,
                           json={"code": code, "password": "not my password"})
    assert unproven.status_code == 403 and not auth.accounts.get("ana").totp_enabled
    done = client.post("/api/v1/me/totp/confirm", headers=session,
                       json={"code": code, "password": PASSWORD})
    assert done.status_code == 204 and auth.accounts.get("ana").totp_enabled
    again = client.post("/api/v1/me/totp", headers=session, json={"password": PASSWORD})
    assert again.status_code == 409  # an enrollment is not replaced from a session
    failures = [e for e in auth.audit.entries() if e.outcome == "failure"]
    assert [e.action for e in failures] == ["user.totp_enroll", "user.totp_confirm"]


def test_wrong_current_passwords_count_as_failed_logins(
        auth: Auth, client: TestClient, login: Callable[..., Any]) -> None:
    """A stolen session cannot guess the password through these routes faster than at login."""
    add_user(auth, "ana")
    session = _session(login, "ana")
    answers = [client.post("/api/v1/me/password", headers=session,
                           json={"password": f"guess number {i}", "new_password": NEW_PASSWORD})
               for i in range(11)]
    assert [a.status_code for a in answers] == [403] * 10 + [429]
    assert login("ana").status_code == 429  # the account's login limit is spent too
    limited = client.post("/api/v1/me/password", headers=session,
                          json={"password": PASSWORD, "new_password": NEW_PASSWORD})
    assert limited.status_code == 429  # even the right one waits
    assert auth.passwords.verify(auth.accounts.get("ana").password_hash, PASSWORD)


def test_changing_the_password_revokes_every_other_token(
        auth: Auth, client: TestClient, login: Callable[..., Any], clock: FakeClock) -> None:
    add_user(auth, "ana")
    add_user(auth, "bob")
    session, other_session = _session(login, "ana"), _session(login, "ana")
    api = bearer(auth.tokens.create_api(auth.accounts.get("ana"), "ci", actor="t").secret)
    bobs = _session(login, "bob")
    weak = client.post("/api/v1/me/password", headers=session,
                       json={"password": PASSWORD, "new_password": "ana is my name ok"})
    assert weak.status_code == 400 and "user name" in weak.json()["error"]["message"]
    changed = client.post("/api/v1/me/password", headers=session,
                          json={"password": PASSWORD, "new_password": NEW_PASSWORD})
    assert changed.status_code == 204, changed.text
    assert NEW_PASSWORD not in changed.text
    assert client.get("/api/v1/me", headers=session).status_code == 200  # the one that asked
    for revoked in (other_session, api):
        assert client.get("/api/v1/me", headers=revoked).status_code == 401
    assert client.get("/api/v1/me", headers=bobs).status_code == 200  # others untouched
    assert login("ana").status_code == 401
    clock.advance(1)
    assert login("ana", NEW_PASSWORD).status_code == 200
    entries = [(e.action, e.outcome) for e in auth.audit.entries()
               if e.action in ("user.password", "token.revoke")]
    assert entries == [("user.password", "success"), ("token.revoke", "success")]
    assert all(NEW_PASSWORD not in str(e.detail) for e in auth.audit.entries())
