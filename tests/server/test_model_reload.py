"""``ferry serve`` picks up a changed model: ``POST /api/v1/model/reload`` (admins) and
SIGHUP load and check it; a model with errors is refused with its findings and the
running one stays."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from dataferry.broker.scheduler import Scheduler
from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.server.app import create_app
from dataferry.server.auth import Auth
from tests.broker.small_model import TEAM
from tests.conftest import FakeClock
from tests.server.conftest import FAST, PASSWORD, add_user, bearer
from tests.server.live import ferry_serve, uvicorn_in_thread

NEW_DATASET = """\
      refunds:
        table: refunds
        primary_key: [id]
        columns:
          id: {type: int64, nullable: false}
          amount: {type: decimal(12,2)}
"""
BROKEN_SQL = "select count(*) as orders, sum(amont) as total from orders"


def add_refunds(root: Path) -> None:
    """A second source dataset, shop.refunds, in the team's file, delivered to its mirror."""
    path = root / "teams" / "shop" / "shop.yaml"
    path.write_text(path.read_text().replace("transformers:\n", NEW_DATASET + "transformers:\n")
                    .replace("      - {ref: shop.totals}\n",
                             "      - {ref: shop.totals}\n      - {ref: shop.refunds}\n"))


def break_sql(root: Path) -> None:
    path = root / "teams" / "shop" / "shop.yaml"
    text = path.read_text()
    assert "sum(amount) as total" in text
    path.write_text(text.replace("sum(amount) as total", "sum(amont) as total"))


def refs(http: httpx.Client, headers: dict[str, str]) -> list[str]:
    response = http.get("/api/v1/datasets", headers=headers)
    assert response.status_code == 200, response.text
    return [item["ref"] for item in response.json()["items"]]


def token(auth: Auth, name: str) -> dict[str, str]:
    return bearer(auth.tokens.create_api(auth.accounts.get(name), "t", scopes=None,
                                         actor="test", expires_in=timedelta(days=1)).secret)


@pytest.fixture
def base_url(context: RunContext, clock: FakeClock) -> Iterator[str]:
    with uvicorn_in_thread(create_app(context, settings=FAST, now=clock)) as url:
        yield url


def test_an_admin_reloads_a_changed_model(auth: Auth, model_root: Path,
                                           base_url: str) -> None:
    add_user(auth, "root", "admin")
    admin = token(auth, "root")
    with httpx.Client(base_url=base_url, timeout=60) as http:
        assert "shop.refunds" not in refs(http, admin)
        add_refunds(model_root)
        assert "shop.refunds" not in refs(http, admin)  # nothing changes by itself
        response = http.post("/api/v1/model/reload", headers=admin)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["reloaded"] is True
        assert (body["datasets"], body["errors"]) == (3, 0)
        assert "shop.refunds" in refs(http, admin)
        assert http.get("/api/v1/datasets/shop.refunds", headers=admin).status_code == 200
    entry = [e for e in auth.audit.entries() if e.action == "model.reload"][-1]
    assert (entry.actor, entry.outcome, entry.client_ip) == ("root", "success", "127.0.0.1")


def test_a_broken_model_is_refused_with_its_findings_and_the_old_one_stays(
        auth: Auth, model_root: Path, base_url: str) -> None:
    add_user(auth, "root", "admin")
    admin = token(auth, "root")
    add_refunds(model_root)
    break_sql(model_root)
    with httpx.Client(base_url=base_url, timeout=60) as http:
        response = http.post("/api/v1/model/reload", headers=admin)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["reloaded"] is False
        errors = [f for f in body["findings"] if f["severity"] == "error"]
        assert [(f["code"], f["file"]) for f in errors] == \
            [("unknown-reference", "teams/shop/shop.yaml")]
        assert "unknown column 'amont'; did you mean 'amount'?" in errors[0]["message"]
        assert "shop.refunds" not in refs(http, admin)  # the running model stays
        assert "shop.totals" in refs(http, admin)
    entry = [e for e in auth.audit.entries() if e.action == "model.reload"][-1]
    assert (entry.outcome, entry.detail) == ("failure", {"errors": 1})


def test_only_admins_reload(auth: Auth, model_root: Path, base_url: str) -> None:
    add_user(auth, "ana", "member", teams=["shop"])
    add_user(auth, "root", "admin")
    narrow = bearer(auth.tokens.create_api(auth.accounts.get("root"), "t", scopes=["read"],
                                           actor="test", expires_in=timedelta(days=1)).secret)
    add_refunds(model_root)
    with httpx.Client(base_url=base_url, timeout=60) as http:
        assert http.post("/api/v1/model/reload", headers=token(auth, "ana")).status_code == 403
        assert http.post("/api/v1/model/reload", headers=narrow).status_code == 403
        assert http.post("/api/v1/model/reload").status_code == 401
        assert "shop.refunds" not in refs(http, token(auth, "ana"))


def test_a_reload_that_moves_the_store_is_refused(auth: Auth, model_root: Path,
                                                  base_url: str) -> None:
    add_user(auth, "root", "admin")
    ferry_yaml = model_root / "ferry.yaml"
    ferry_yaml.write_text(ferry_yaml.read_text() + "home: elsewhere\n")
    with httpx.Client(base_url=base_url, timeout=60) as http:
        response = http.post("/api/v1/model/reload", headers=token(auth, "root"))
    assert response.status_code == 422
    assert "moves home" in response.json()["refused"]


def test_the_scheduler_follows_a_reloaded_model(model_root: Path, clock: FakeClock) -> None:
    context = RunContext.from_loaded(load_model(model_root))
    scheduler = Scheduler(context, now=clock)
    try:
        assert "ingest:shop.refunds" not in scheduler.graph.jobs
        add_refunds(model_root)
        reloaded = context.with_model(load_model(model_root))
        scheduler.follow(reloaded)
        assert "ingest:shop.refunds" not in scheduler.graph.jobs  # from the next tick on
        scheduler.tick()
        assert "ingest:shop.refunds" in scheduler.graph.jobs
        assert scheduler.context is reloaded
        scheduler.wait()
    finally:
        scheduler.close()
        context.close()


def test_sighup_reloads_ferry_serve(auth: Auth, model_root: Path) -> None:
    """The real process: edit the files, send SIGHUP, the API serves the new model; break
    the model, SIGHUP again: refused, the log says why, the model before stays."""
    add_user(auth, "root", "admin")
    with ferry_serve(model_root) as served, httpx.Client(base_url=served.url,
                                                         timeout=60) as http:
        login = http.post("/api/v1/auth/login", json={"username": "root", "password": PASSWORD})
        assert login.status_code == 200, login.text
        http.cookies.clear()
        admin = bearer(login.json()["access_token"])
        assert "shop.refunds" not in refs(http, admin)
        add_refunds(model_root)
        os.kill(served.process.pid, signal.SIGHUP)
        _eventually(lambda: "shop.refunds" in refs(http, admin))
        break_sql(model_root)
        (model_root / "teams" / "shop" / "shop.yaml").write_text(
            (model_root / "teams" / "shop" / "shop.yaml").read_text().replace(
                "      refunds:", "      refunds_v2:").replace("ref: shop.refunds}",
                                                          "ref: shop.refunds_v2}"))
        os.kill(served.process.pid, signal.SIGHUP)
        _eventually(lambda: len([e for e in auth.audit.entries()
                                 if e.action == "model.reload"]) == 2)
        assert "shop.refunds" in refs(http, admin) and "shop.refunds_v2" not in refs(http, admin)
        log = (model_root.parent / f"serve-{served.port}.log").read_text()
    assert "model reloaded: 1 teams, 3 datasets" in log
    assert "model reload refused (1 error(s) in the model); the running model stays" in log
    assert "unknown column 'amont'" in log
    outcomes = [(e.actor, e.outcome) for e in auth.audit.entries() if e.action == "model.reload"]
    assert outcomes == [("signal:SIGHUP", "success"), ("signal:SIGHUP", "failure")]


def _eventually(condition: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.1)


def test_the_small_model_is_what_these_tests_edit() -> None:
    assert "transformers:\n" in TEAM and "sum(amount) as total" in TEAM
    assert "      - {ref: shop.totals}\n" in TEAM
