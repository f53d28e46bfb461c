"""Input a PostgreSQL metadata DB cannot hold gets a 4xx, never a 500 (on both backends).

Found by the fuzzer (test_fuzz.py) on PostgreSQL, where ids are 32-bit and text may not
hold NUL; SQLite stores either, so the same request must get the same answer there.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from dataferry.server.auth import Auth
from dataferry.server.errors import MAX_ID
from tests.server.conftest import PASSWORD, add_user, bearer


def _admin(auth: Auth, login: Any) -> dict[str, str]:
    add_user(auth, "root", "admin")
    return bearer(login("root").json()["access_token"])


def test_ids_beyond_the_id_columns_are_invalid_not_a_failure(
        client: TestClient, auth: Auth, login: Any) -> None:
    headers = _admin(auth, login)
    for path in (f"/api/v1/runs/{MAX_ID + 1}", "/api/v1/runs/10225744036", "/api/v1/runs/0",
                 "/api/v1/runs/-99999999999"):
        response = client.get(path, headers=headers)
        assert response.status_code == 422, (path, response.text)
        assert "run_id" in response.json()["error"]["message"]
    assert client.get(f"/api/v1/runs/{MAX_ID}", headers=headers).status_code == 404
    for token_id in (MAX_ID + 1, 2**63, -(2**40)):
        response = client.delete(f"/api/v1/tokens/{token_id}", headers=headers)
        assert response.status_code == 422, (token_id, response.text)
    assert client.delete(f"/api/v1/tokens/{MAX_ID}", headers=headers).status_code == 404
    spec = client.get("/openapi.json").json()["paths"]["/api/v1/runs/{run_id}"]["get"]
    assert spec["parameters"][0]["schema"]["maximum"] == MAX_ID


def test_a_nul_in_a_name_looked_up_matches_nothing(client: TestClient, auth: Auth,
                                                    login: Any) -> None:
    headers = _admin(auth, login)
    runs = client.get("/api/v1/runs", headers=headers, params={"job": "ingest:a\x00b"})
    assert runs.status_code == 200 and runs.json()["items"] == []
    disable = client.post("/api/v1/users/ro%00ot/disable", headers=headers)
    assert disable.status_code == 404, disable.text
    token = client.post("/api/v1/tokens", headers=headers, json={"name": "ci", "user": "r\x00"})
    assert token.status_code == 404, token.text


def test_a_nul_in_a_login_name_is_a_failed_login_counted_and_audited(
        client: TestClient, auth: Auth, login: Any) -> None:
    add_user(auth, "root", "admin")
    response = login("ro\x00ot", PASSWORD)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["message"] == "invalid username, password or TOTP code"
    failed = [e for e in auth.audit.entries() if e.action == "login" and e.outcome == "failure"]
    assert [e.actor for e in failed] == ["ro\ufffdot"]
    assert login("root").status_code == 200


def test_a_nul_in_text_to_be_stored_is_a_bad_request(client: TestClient, auth: Auth,
                                                     login: Any) -> None:
    headers = _admin(auth, login)
    token = client.post("/api/v1/tokens", headers=headers, json={"name": "ci\x00nightly"})
    assert token.status_code == 400, token.text
    assert "no NUL" in token.json()["error"]["message"]
    user = client.post("/api/v1/users", headers=headers, json={
        "username": "nina", "role": "member", "password": "harbor quartz lantern 77",
        "email": "ni\x00na@acme.example"})
    assert user.status_code == 400, user.text
    assert "e-mail" in user.json()["error"]["message"]
    assert client.get("/api/v1/tokens", headers=headers).json() != []  # still answers


def test_a_last_event_id_that_names_no_run_starts_from_now(client: TestClient, auth: Auth,
                                                          login: Any) -> None:
    headers = _admin(auth, login)
    for last in (b"run-99999999999999", b"run-\xb2", b"run-", b"run-00000000000000000001"):
        response = client.get("/api/v1/events", headers={**headers, "Last-Event-ID": last},
                              params={"timeout": 0.05})
        assert response.status_code == 200, (last, response.text)
        assert response.text.startswith("retry: ")
