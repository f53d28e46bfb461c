"""The web UI end to end in headless Chromium: a real uvicorn, a real browser.

A member of team shop with TOTP logs in (typing the code of the moment), searches the
catalog for "orders", opens shop.orders, sees the lineage picture, runs the dataset's
ingest and watches the run page (which refreshes itself) until the run has ended. An
admin then opens the plan and the users page. The browser must report no Content
Security Policy violation on the way: the pages' one inline style carries its nonce.

Needs Debian's ``/usr/bin/chromium`` and the ``playwright`` package; skipped without them
unless FERRY_REQUIRE_SERVICES=1 (CI), where that is a failure. With
``FERRY_SCREENSHOTS=docs/screenshots`` the test also saves the screenshots of docs/ui.md.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
import uvicorn

from dataferry.cli.demo import run_demo
from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.server.app import create_app
from dataferry.server.auth import Auth
from tests.server.conftest import FAST

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "quartz harbor wind 2026"
TIMEOUT_MS = 20_000


def require_browser() -> Any:
    """Playwright's sync API, or a skip (a failure with FERRY_REQUIRE_SERVICES=1) saying
    what is missing — in the style of ``tests.conftest.require_service``."""
    problem = None
    try:
        from playwright import sync_api
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem is None and not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    if problem is not None:
        if os.environ.get("FERRY_REQUIRE_SERVICES") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    return sync_api


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The demo behind a real uvicorn on 127.0.0.1: (base URL, alice's TOTP secret)."""
    root = tmp_path_factory.mktemp("demo") / "acme"
    assert run_demo(root, 20) == 0
    context = RunContext.from_loaded(load_model(root))
    auth = Auth.for_context(context, FAST)
    auth.accounts.add("alice", "member", PASSWORD, actor="test", email="alice@acme.example")
    auth.accounts.add("admin", "admin", PASSWORD, actor="test", email="ops@acme.example")
    secret = auth.accounts.enroll_totp("alice", actor="test", confirmed=True).secret
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))  # a free port, held from now on: no race for it
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(context, settings=FAST),
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]},
                              name="ui-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", secret
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()
        context.close()


class Shots:
    """Full-page screenshots into $FERRY_SCREENSHOTS (if set) for docs/ui.md."""

    def __init__(self) -> None:
        target = os.environ.get("FERRY_SCREENSHOTS")
        self.directory = Path(target) if target else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def take(self, page: Any, name: str) -> None:
        if self.directory is not None:
            page.screenshot(path=str(self.directory / f"{name}.png"), full_page=True)


def log_in(page: Any, base: str, username: str, totp: str | None = None,
           shots: Shots | None = None) -> None:
    page.goto(f"{base}/")
    assert "/login" in page.url  # not logged in yet: sent to the login form
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    if totp is not None:
        page.fill("#totp", totp)
    if shots is not None:
        shots.take(page, "login")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_log_in_find_a_dataset_see_lineage_run_its_ingest(served: tuple[str, str]) -> None:
    sync_api = require_browser()
    base, secret = served
    shots = Shots()
    violations: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            page.on("console", lambda m: violations.append(m.text)
                    if "Content Security Policy" in m.text else None)

            log_in(page, base, "alice", pyotp.TOTP(secret).now(), shots)
            page.fill("input[name=search]", "orders")
            page.press("input[name=search]", "Enter")
            page.wait_for_url(re.compile(r".*search=orders.*"))
            shots.take(page, "catalog")
            page.click("a[href='/datasets/shop.orders']")
            page.wait_for_url(f"{base}/datasets/shop.orders")
            lineage = page.locator("[data-testid=lineage] svg")
            sync_api.expect(lineage).to_be_visible()
            assert lineage.bounding_box()["width"] > 100
            sync_api.expect(page.locator("[data-testid=sample]")).to_be_visible()
            shots.take(page, "dataset")

            page.click("[data-testid=run-job]")
            page.wait_for_url(re.compile(r".*/runs/\d+$"))
            status = page.locator("[data-testid=status]")
            # The page refreshes itself every 2 s while the run is going.
            sync_api.expect(status).to_have_text(re.compile(r"^(succeeded|unchanged)$"),
                                                 timeout=TIMEOUT_MS)
            assert "ingest:shop.orders" in page.inner_text("h1")
            sync_api.expect(page.locator("[data-testid=retry]")).to_be_visible()
            shots.take(page, "run")
            page.click("text=All runs of this job")
            page.wait_for_url(re.compile(r".*/runs\?job=ingest%3Ashop\.orders$"))
            rows = page.locator("[data-testid=runs] tbody tr").all_inner_texts()
            assert len(rows) >= 2 and all("ingest:shop.orders" in row for row in rows)
            shots.take(page, "runs")
            context.close()

            admin = browser.new_context(viewport={"width": 1280, "height": 800})
            admin.set_default_timeout(TIMEOUT_MS)
            page = admin.new_page()
            log_in(page, base, "admin")
            page.goto(f"{base}/plan")
            sync_api.expect(page.locator("[data-testid=plan]")).to_be_visible()
            shots.take(page, "plan")
            page.goto(f"{base}/admin/users")
            sync_api.expect(page.locator("[data-testid=users]")).to_contain_text("alice")
            shots.take(page, "admin-users")
            admin.close()
        finally:
            browser.close()
    assert violations == []
