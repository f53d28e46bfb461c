"""A consumer with ``sink: {kind: share}``: ``ferry check`` and ``ferry plan`` know it, it
gets no delivery, and Delta Sharing serves it the rows its need asks for."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from dataferry.cli.run_commands import _context
from dataferry.engine.context import RunContext
from dataferry.server.app import create_app
from dataferry.sharing.tokens import ShareTokens
from tests.conftest import FakeClock, Result
from tests.sharing.partner_model import make_partner_model, sink_rows

SHARED = """\
  notebooks:
    sink: {kind: share}
    datasets:
      - {ref: shop.orders, columns: [id, amount, email], where: "country = 'de'",
         mask: [email]}
"""


def _with_share(tmp_path: Path) -> Path:
    root = make_partner_model(tmp_path / "model")
    team = root / "teams/shop/shop.yaml"
    team.write_text(team.read_text() + SHARED)
    return root


def test_check_and_plan_know_a_share_consumer(tmp_path: Path,
                                              ferry: Callable[..., Result]) -> None:
    root = _with_share(tmp_path)
    team = root / "teams/shop/shop.yaml"
    connect = ferry("check", "--connect", "--model", root)
    assert connect.code == 0, connect
    assert "notebooks" not in connect.out + connect.err  # nothing to reach
    plan = ferry("plan", "--model", root)
    assert "shop.notebooks  served by Delta Sharing, no delivery job: shop.orders" in plan.out
    assert "deliver:shop.notebooks" not in plan.out
    team.write_text(team.read_text().replace("{kind: share}", "{kind: share, network: lan}"))
    bad = ferry("check", "--model", root)
    assert bad.code != 0
    assert "a share sink has no network" in bad.out + bad.err


def test_a_share_consumer_is_served_what_a_sink_with_its_need_gets(
        tmp_path: Path, ferry: Callable[..., Result], clock: FakeClock) -> None:
    root = _with_share(tmp_path)
    run = ferry("run", "shop.notebooks", "--model", root)
    assert run.code == 0, run
    assert "deliver:" not in run.out and not (root / "out" / "notebooks.db").exists()
    context = _context(root)
    assert isinstance(context, RunContext)
    try:
        issued = ShareTokens(context.metadata, clock).create("shop.notebooks",
                                                             timedelta(days=1), actor="test")
        token = {"Authorization": f"Bearer {issued.secret}"}
        with TestClient(create_app(context, now=clock)) as client:
            table = "/delta-sharing/shares/shop__notebooks/schemas/shop/tables/orders"
            answer = client.post(table + "/query", json={}, headers=token)
            assert answer.status_code == 200 and answer.headers["Delta-Table-Version"] == "2"
            files = [line for line in answer.text.splitlines() if '"file"' in line]
            url = json.loads(files[0])["file"]["url"].removeprefix("http://testserver")
            local = tmp_path / "served.parquet"
            local.write_bytes(client.get(url).content)
    finally:
        context.close()
    rows = sorted(pq.read_table(local).to_pylist(), key=lambda r: r["id"])
    # the same need as the partner's SQLite sink: the same rows, the same masked emails
    assert [{**r, "amount": float(r["amount"])} for r in rows] == sink_rows(root, "partner")
