"""Admin -> Agents: admins list agents, make an enrollment token (shown once) and revoke;
members may not. The same through ``/api/v1/agents``."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from dataferry.agent.identity import Identity
from dataferry.agent.registry import Agents
from dataferry.server.app import create_app
from dataferry.server.auth import Auth
from tests.agent.hub import context_of, write_model
from tests.server.conftest import FAST
from tests.server.test_ui import PASSWORD, csrf_of, ui_login


def test_admins_enroll_list_and_revoke_agents_members_do_not(tmp_path: Path) -> None:
    root = write_model(tmp_path / "model", "postgresql://reader@erp.internal/erp")
    context = context_of(root)
    try:
        auth = Auth.for_context(context, FAST)
        auth.accounts.add("root", "admin", PASSWORD, actor="test")
        auth.accounts.add("ann", "member", PASSWORD, actor="test", teams=["crm"])
        with TestClient(create_app(context, settings=FAST), follow_redirects=False) as admin, \
                TestClient(create_app(context, settings=FAST),
                           follow_redirects=False) as member:
            assert ui_login(admin, "root", PASSWORD).status_code == 303
            page = admin.get("/admin/agents")
            assert page.status_code == 200 and "No agents enrolled." in page.text
            made = admin.post("/admin/agents/enroll",
                              data={"csrf": csrf_of(page.text), "network": "hq-lan"})
            assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
            token = re.search(r"<code>(fe_[\w-]+)</code>", made.text)
            assert token is not None
            identity = Identity(tmp_path / "agent")
            agents = Agents(context.metadata)
            agent = agents.spend(token.group(1), identity.public_key_hex(),
                                 identity.sign(token.group(1).encode()), hostname="gw-7",
                                 version="1.2").agent
            listed = admin.get("/admin/agents").text
            assert "gw-7" in listed and token.group(1) not in listed
            unknown = admin.post("/admin/agents/enroll",
                                 data={"csrf": csrf_of(listed), "network": "elsewhere"})
            assert unknown.status_code == 400 and "elsewhere" in unknown.text
            done = admin.post(f"/admin/agents/{agent.id}/revoke",
                              data={"csrf": csrf_of(listed)})
            assert done.status_code == 303
            assert f"Revoked agent {agent.id}." in admin.get(done.headers["location"]).text
            assert agents.list() == []
            assert ui_login(member, "ann", PASSWORD).status_code == 303
            assert member.get("/admin/agents").status_code == 403
    finally:
        context.close()


def test_the_api_enrolls_lists_and_revokes_for_admins_only(tmp_path: Path) -> None:
    root = write_model(tmp_path / "model", "postgresql://reader@erp.internal/erp")
    context = context_of(root)
    try:
        auth = Auth.for_context(context, FAST)
        auth.accounts.add("root", "admin", PASSWORD, actor="test")
        auth.accounts.add("ann", "member", PASSWORD, actor="test", teams=["crm"])
        with TestClient(create_app(context, settings=FAST)) as client:
            def bearer(name: str) -> dict[str, str]:
                answer = client.post("/api/v1/auth/login",
                                     json={"username": name, "password": PASSWORD})
                return {"Authorization": f"Bearer {answer.json()['access_token']}"}

            root_auth, ann = bearer("root"), bearer("ann")
            assert client.post("/api/v1/agents/enrollments", json={"network": "hq-lan"},
                               headers=ann).status_code == 403
            made = client.post("/api/v1/agents/enrollments", json={"network": "hq-lan"},
                               headers=root_auth)
            assert made.status_code == 201, made.text
            token = made.json()["token"]
            identity = Identity(tmp_path / "agent")
            registered = client.post("/api/v1/agent/register", json={
                "token": token, "public_key": identity.public_key_hex(),
                "signature": identity.sign(token.encode()), "hostname": "gw", "version": "1"})
            assert registered.status_code == 201, registered.text
            again = client.post("/api/v1/agent/register", json={
                "token": token, "public_key": Identity(tmp_path / "b").public_key_hex(),
                "signature": Identity(tmp_path / "b").sign(token.encode())})
            assert again.status_code == 401  # spent
            listed = client.get("/api/v1/agents", headers=root_auth).json()
            assert [(a["network"], a["hostname"], a["running_job"]) for a in listed] == [
                ("hq-lan", "gw", None)]
            agent_id = registered.json()["agent_id"]
            credential = {"Authorization": f"Bearer {registered.json()['credential']}"}
            assert client.post("/api/v1/agent/poll", json={"timeout": 0},
                               headers=credential).json()["job"] is None
            assert client.post(f"/api/v1/agents/{agent_id}/revoke",
                               headers=root_auth).status_code == 204
            assert client.post("/api/v1/agent/poll", json={"timeout": 0},
                               headers=credential).status_code == 401
            assert client.get("/api/v1/agents", headers=root_auth).json() == []
    finally:
        context.close()
