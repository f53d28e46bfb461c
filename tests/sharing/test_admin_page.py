"""The admin web page for shares: admins list live share tokens and revoke a consumer's."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from dataferry.cli.run_commands import _context
from dataferry.engine.context import RunContext
from dataferry.server.app import create_app
from dataferry.server.auth import Auth
from dataferry.sharing.tokens import ShareTokens
from tests.conftest import write_files
from tests.server.conftest import FAST
from tests.server.test_ui import PASSWORD, csrf_of, ui_login
from tests.sharing.partner_model import TEAM


def test_admins_see_and_revoke_shares_members_do_not(tmp_path: Path) -> None:
    root = write_files(tmp_path / "model", {"ferry.yaml": "ecosystem: acme\nzones: {eu: {}}\n",
                                            "teams/shop/shop.yaml": TEAM})
    context = _context(root)
    assert isinstance(context, RunContext)
    try:
        auth = Auth.for_context(context, FAST)
        auth.accounts.add("root", "admin", PASSWORD, actor="test")
        auth.accounts.add("ann", "member", PASSWORD, actor="test", teams=["shop"])
        issued = ShareTokens(context.metadata).create("shop.partner", timedelta(days=3),
                                                      actor="cli:ops")
        with TestClient(create_app(context, settings=FAST), follow_redirects=False) as admin, \
                TestClient(create_app(context, settings=FAST),
                           follow_redirects=False) as member:
            assert ui_login(admin, "root", PASSWORD).status_code == 303
            page = admin.get("/admin/shares")
            assert page.status_code == 200 and 'data-testid="shares"' in page.text
            assert "shop.partner" in page.text and "shop__partner" in page.text
            assert "cli:ops" in page.text and issued.secret not in page.text
            done = admin.post("/admin/shares/shop.partner/revoke",
                              data={"csrf": csrf_of(page.text)})
            assert done.status_code == 303
            after = admin.get(done.headers["location"]).text
            assert "Revoked the share tokens of shop.partner." in after
            assert "No live share tokens." in after
            assert ShareTokens(context.metadata).find_live(issued.secret) is None
            assert ui_login(member, "ann", PASSWORD).status_code == 303
            assert member.get("/admin/shares").status_code == 403
    finally:
        context.close()
