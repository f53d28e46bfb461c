"""Logging in over the API: generic failures, TOTP (replay, skew, recovery codes),
brute-force limits, and the session cookie."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dataferry.server.auth import Auth
from dataferry.server.auth.totp import code_at
from tests.conftest import FakeClock
from tests.server.conftest import PASSWORD, add_user, bearer

pytestmark = pytest.mark.security

GENERIC = {"error": {"code": "unauthorized",
                     "message": "invalid username, password or TOTP code"}}


def test_login_returns_a_token_that_works(auth: Auth, client: TestClient,
                                          login: Callable[..., Any], clock: FakeClock) -> None:
    add_user(auth, "ana", email="alice@acme.example", teams=["shop"])
    response = login("Ana")  # user names are case-insensitive
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["access_token"].startswith("fy_") and len(body["access_token"]) >= 40
    assert body["expires_at"].startswith((clock() + timedelta(hours=12)).date().isoformat())
    me = client.get("/api/v1/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "ana" and me.json()["teams"] == ["shop"]


def test_every_failure_looks_the_same(auth: Auth, login: Callable[..., Any]) -> None:
    add_user(auth, "ana")
    add_user(auth, "bob")
    auth.accounts.disable("bob", actor="test")
    answers = [login("nobody"), login("ana", "wrong password here"), login("bob")]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert all(a.json() == GENERIC for a in answers)
    reasons = [e.detail["reason"] for e in auth.audit.entries() if e.action == "login"]
    assert reasons == ["unknown user", "wrong password", "user disabled"]
    assert {e.client_ip for e in auth.audit.entries() if e.action == "login"} == {"10.0.0.1"}


def _enroll(client: TestClient, token: str, clock: FakeClock) -> tuple[str, list[str]]:
    started = client.post("/api/v1/me/totp", headers=bearer(token), json={"password": PASSWORD})
    assert started.status_code == 201, started.text
    secret, codes = started.json()["secret"], started.json()["recovery_codes"]
    assert f"secret={secret}" in started.json()["otpauth_uri"]
    wrong = client.post("/api/v1/me/totp/confirm", headers=bearer(token),
                        json={"code": "000000", "password": PASSWORD})
    assert wrong.status_code == 400
    done = client.post("/api/v1/me/totp/confirm", headers=bearer(token),
                       json={"code": code_at(secret, clock()), "password": PASSWORD})
    assert done.status_code == 204, done.text
    return secret, codes


def test_totp_is_required_once_confirmed_and_a_code_works_once(
        auth: Auth, client: TestClient, login: Callable[..., Any], clock: FakeClock) -> None:
    add_user(auth, "ana")
    token = login("ana").json()["access_token"]
    started = client.post("/api/v1/me/totp", headers=bearer(token),
                          json={"password": PASSWORD}).json()
    assert login("ana").status_code == 200  # not confirmed yet: password alone still works
    client.post("/api/v1/me/totp/confirm", headers=bearer(token),
                json={"code": code_at(started["secret"], clock()), "password": PASSWORD})
    secret = started["secret"]
    clock.advance(60)
    assert login("ana").json() == GENERIC  # no code
    assert login("ana", totp="123456").json() == GENERIC
    code = code_at(secret, clock())
    assert login("ana", totp=code).status_code == 200
    assert login("ana", totp=code).json() == GENERIC  # replayed
    clock.advance(30)
    assert login("ana", totp=code_at(secret, clock())).status_code == 200


def test_one_step_of_clock_skew_is_allowed_two_are_not(
        auth: Auth, client: TestClient, login: Callable[..., Any], clock: FakeClock) -> None:
    add_user(auth, "ana")
    secret, _ = _enroll(client, login("ana").json()["access_token"], clock)
    clock.advance(300)
    now = clock()
    assert login("ana", totp=code_at(secret, now - timedelta(seconds=60))).status_code == 401
    assert login("ana", totp=code_at(secret, now - timedelta(seconds=30))).status_code == 200
    clock.advance(300)
    now = clock()
    assert login("ana", totp=code_at(secret, now + timedelta(seconds=60))).status_code == 401
    assert login("ana", totp=code_at(secret, now + timedelta(seconds=30))).status_code == 200
    # the future step was used: the current one (earlier) is now a replay
    assert login("ana", totp=code_at(secret, now)).status_code == 401


def test_a_recovery_code_works_once(auth: Auth, client: TestClient,
                                    login: Callable[..., Any], clock: FakeClock) -> None:
    add_user(auth, "ana")
    _, codes = _enroll(client, login("ana").json()["access_token"], clock)
    assert len(codes) == len(set(codes)) == 10
    assert login("ana", totp=codes[3].upper()).status_code == 200
    assert login("ana", totp=codes[3]).json() == GENERIC
    assert login("ana", totp=codes[4]).status_code == 200


def test_ten_failures_lock_the_account_for_a_while(
        auth: Auth, login: Callable[..., Any], clock: FakeClock) -> None:
    add_user(auth, "ana")
    for _ in range(10):
        assert login("ana", "not the password!").status_code == 401
        clock.advance(10)
    locked = login("ana")  # even the right password
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "rate_limited"
    assert int(locked.headers["Retry-After"]) == 15 * 60 - 100
    clock.advance(15 * 60 - 100)
    assert login("ana").status_code == 200
    assert [e.outcome for e in auth.audit.entries()][-2:] == ["rate_limited", "success"]


def test_fifty_failures_from_one_ip_block_it_for_every_account(
        auth: Auth, client: TestClient, login: Callable[..., Any], clock: FakeClock) -> None:
    add_user(auth, "ana")
    for number in range(49):
        assert login(f"user{number}", "spray password 1").status_code == 401
    assert login("ana").status_code == 200  # a success does not reset the IP's count
    assert login("someone", "spray password 1").status_code == 401  # the 50th
    blocked = login("ana")
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    with TestClient(client.app, client=("10.0.0.2", 40000)) as other:
        assert login("ana", via=other).status_code == 200


def test_login_sets_a_safe_session_cookie_that_authenticates(
        auth: Auth, client: TestClient) -> None:
    add_user(auth, "ana")
    response = client.post("/api/v1/auth/login", json={"username": "ana", "password": PASSWORD})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("ferry_session=fy_")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert client.get("/api/v1/me").status_code == 200  # the cookie alone, for a GET
    assert client.post("/api/v1/auth/logout").status_code == 401  # not for a POST (CSRF)
    assert client.post("/api/v1/auth/logout",
                       headers=bearer(response.json()["access_token"])).status_code == 204
    client.cookies.clear()
    client.cookies.set("ferry_session", response.json()["access_token"])
    assert client.get("/api/v1/me").status_code == 401


def test_login_requires_totp_enrollment_when_the_account_must_have_it(
        auth: Auth, login: Callable[..., Any]) -> None:
    add_user(auth, "ana", totp_required=True)
    response = login("ana")
    assert response.status_code == 403
    assert "ferry users totp-enroll ana" in response.json()["error"]["message"]
