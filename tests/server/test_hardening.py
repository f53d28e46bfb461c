"""Hardening found missing by an attacker's review (issue 11, point 10), each a regression:

- integers too large for the database in any query or path parameter were a 500;
- ``/docs`` loaded Swagger UI's script from a CDN without integrity;
- API answers (rows, runs, who am I) could be cached by a browser or proxy;
- the SQLite metadata database (password and token hashes, the audit log) was
  readable by every local user;
- an admin could disable the last enabled admin, leaving nobody to manage users;
- a disabled user could not be enabled again.
"""

from __future__ import annotations

import io
import re
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dataferry.metadata.database import open_metadata
from dataferry.server.auth import Auth
from tests.server.conftest import PASSWORD, add_user, bearer

pytestmark = pytest.mark.security

HUGE = ["9223372036854775808", "18446744073709551616", "-9223372036854775809",
        "1" + "0" * 40]


def _admin(auth: Auth, login: Callable[..., Any], name: str = "root") -> dict[str, str]:
    add_user(auth, name, "admin")
    response = login(name)
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


def test_no_integer_parameter_of_any_route_is_a_500(auth: Auth, client: TestClient,
                                                    login: Callable[..., Any]) -> None:
    """Every integer query and path parameter of /openapi.json, given numbers no column
    holds: a 4xx (or an answer), never a 500."""
    headers = _admin(auth, login)
    paths = client.get("/openapi.json").json()["paths"]
    defaults = {"ref": "shop.orders", "name": "root", "job": "ingest:shop.orders"}
    probed = 0
    for path, operations in paths.items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                kinds = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
                if "integer" not in kinds or parameter["in"] not in ("query", "path"):
                    continue
                for value in HUGE:
                    url = re.sub(r"{(\w+)}", lambda m, p=parameter, v=value:
                                 v if m.group(1) == p["name"] else defaults.get(m.group(1), "1"),
                                 path)
                    params = {parameter["name"]: value} if parameter["in"] == "query" else {}
                    if path.endswith("/events"):
                        params["timeout"] = "0.1"
                    response = client.request(method.upper(), url, headers=headers,
                                              params=params,
                                              json={} if method != "get" else None)
                    probed += 1
                    assert response.status_code < 500, (method, path, parameter["name"],
                                                        value, response.text)
    assert probed >= 20  # offsets, limits, ids, version numbers, depth


def test_runs_offset_beyond_64_bits_is_refused_not_a_500(auth: Auth, client: TestClient,
                                                          login: Callable[..., Any]) -> None:
    headers = _admin(auth, login)
    answer = client.get("/api/v1/runs", params={"offset": "9223372036854775808"},
                        headers=headers)
    assert answer.status_code == 422
    assert "offset" in answer.json()["error"]["message"]


def test_the_api_page_loads_nothing_from_another_site(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/") and not s.startswith("//") for s in sources)
    assert "cdn" not in page.text.lower()
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in policy and "frame-ancestors 'none'" in policy
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None
    scripts = re.findall(r"<script([^>]*)>", page.text)
    assert scripts and all(f'nonce="{nonce.group(1)}"' in s or "src=" in s for s in scripts)
    for source in sources:
        assert client.get(source).status_code == 200, source


def test_api_answers_are_never_cached(auth: Auth, client: TestClient,
                                      login: Callable[..., Any]) -> None:
    headers = _admin(auth, login)
    for path in ("/api/v1/me", "/api/v1/datasets/shop.orders/rows", "/api/v1/runs",
                 "/api/v1/nothing-here"):
        answer = client.get(path, headers=headers)
        assert answer.headers.get("Cache-Control") == "no-store", (path, answer.status_code)
    login_answer = login("root")
    assert login_answer.headers.get("Cache-Control") == "no-store"  # it holds a token


def test_the_metadata_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "home" / "ferry.db"
    with open_metadata(f"sqlite:///{path}") as db:
        assert db.dialect == "sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for extra in (path.with_name("ferry.db-wal"), path.with_name("ferry.db-shm")):
        if extra.exists():
            assert stat.S_IMODE(extra.stat().st_mode) == 0o600, extra
    path.chmod(0o644)  # made by an earlier version, or copied with the wrong mode
    with open_metadata(f"sqlite:///{path}"):
        pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_last_enabled_admin_cannot_be_disabled(auth: Auth, client: TestClient,
                                                   login: Callable[..., Any]) -> None:
    root = _admin(auth, login, "root")
    add_user(auth, "ana")
    refused = client.post("/api/v1/users/root/disable", headers=root)
    assert refused.status_code == 409, refused.text
    assert "last enabled admin" in refused.json()["error"]["message"]
    assert client.get("/api/v1/me", headers=root).status_code == 200
    other = _admin(auth, login, "bea")
    assert client.post("/api/v1/users/root/disable", headers=other).status_code == 200
    assert client.post("/api/v1/users/bea/disable", headers=other).status_code == 409
    assert not auth.users.get("bea").disabled  # type: ignore[union-attr]


def test_two_admins_disabling_each_other_at_once_leave_one(auth: Auth) -> None:
    add_user(auth, "root", "admin")
    add_user(auth, "bea", "admin")
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def disable(name: str, actor: str) -> None:
        start.wait()
        try:
            auth.accounts.disable(name, actor=actor)
            outcomes.append("disabled")
        except Exception as error:  # the Conflict of the one that came second
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=disable, args=("root", "bea")),
               threading.Thread(target=disable, args=("bea", "root"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["Conflict", "disabled"]
    assert [u.username for u in auth.users.list() if u.role == "admin" and not u.disabled]


def test_a_disabled_user_can_be_enabled_again_without_its_old_tokens(
        auth: Auth, client: TestClient, login: Callable[..., Any]) -> None:
    root = _admin(auth, login)
    add_user(auth, "ana")
    old = bearer(login("ana").json()["access_token"])
    assert client.post("/api/v1/users/ana/disable", headers=root).status_code == 200
    assert login("ana").status_code == 401
    enabled = client.post("/api/v1/users/ana/enable", headers=root)
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert client.get("/api/v1/me", headers=old).status_code == 401  # still revoked
    assert login("ana").status_code == 200
    again = client.post("/api/v1/users/ana/enable", headers=root)
    assert again.status_code == 409 and "not disabled" in again.json()["error"]["message"]
    actions = [e.action for e in auth.audit.entries()]
    assert "user.enable" in actions


def test_ferry_users_enable(ferry: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
                            model_root: Path) -> None:
    for name, role in (("root", "admin"), ("ana", "member")):
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert ferry("users", "add", name, "--role", role, "--password-stdin",
                     "--model", model_root).code == 0
    last = ferry("users", "disable", "root", "--model", model_root)
    assert last.code == 1 and "last enabled admin" in last.err
    assert ferry("users", "disable", "ana", "--model", model_root).code == 0
    enabled = ferry("users", "enable", "ana", "--model", model_root)
    assert enabled.code == 0 and "enabled ana" in enabled.out, enabled
    assert re.search(r"ana\s+member(?!.*DISABLED)", ferry("users", "list", "--model",
                                                          model_root).out)
    twice = ferry("users", "enable", "ana", "--model", model_root)
    assert twice.code == 1 and "not disabled" in twice.err
