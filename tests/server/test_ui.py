"""The web UI through TestClient: login (+TOTP), every page for each kind of user, CSRF,
open redirects, error pages, security headers and what each user may see and do.

The demo (acme: shop, finance, marketing, research) runs once per module. Users: admin,
alice (shop's owner by e-mail), erin (marketing: its consumer receives shop.customers
with email masked), zed (a member of a team with nothing), vic (a viewer) and tess
(shop, with TOTP). Each user has its own TestClient (its own cookie jar) on one app.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient

from dataferry.cli.demo import run_demo
from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.server.app import create_app
from dataferry.server.auth import Auth, AuthSettings
from dataferry.server.ui.web import safe_next
from tests.server.conftest import FAST

PASSWORD = "quartz harbor wind 2026"
USERS = {
    "admin": {"role": "admin"},
    "alice": {"role": "member", "email": "alice@acme.example"},
    "erin": {"role": "member", "email": "erin@acme.example"},
    "zed": {"role": "member", "email": "zed@elsewhere.example"},
    "vic": {"role": "viewer", "email": "alice@acme.example"},
    "tess": {"role": "member", "email": "tess@acme.example", "teams": ["shop"]},
}
CSRF = re.compile(r'name="csrf" value="([^"]*)"')


class Site:
    """The app of the module, its Auth services, and a logged-in client per user."""

    def __init__(self, app: Any, auth: Auth, context: RunContext, totp_secret: str) -> None:
        self.app, self.auth, self.context, self.totp_secret = app, auth, context, totp_secret
        self.clients: dict[str, TestClient] = {}

    def anonymous(self, ip: str = "10.1.1.1") -> TestClient:
        return TestClient(self.app, client=(ip, 50000), follow_redirects=False)

    def as_user(self, name: str) -> TestClient:
        if name not in self.clients:
            client = self.anonymous()
            totp = pyotp.TOTP(self.totp_secret).now() if name == "tess" else None
            response = ui_login(client, name, PASSWORD, totp)
            assert response.status_code == 303, response.text
            self.clients[name] = client
        return self.clients[name]


def ui_login(client: TestClient, username: str, password: str, totp: str | None = None,
             next: str | None = None) -> Any:
    """Log in through the form as a browser does: GET the form, POST it back."""
    page = client.get("/login", params={"next": next} if next else None)
    assert page.status_code == 200, page.text
    form = {"csrf": csrf_of(page.text), "username": username, "password": password,
            "totp": totp or "", "next": next or "/"}
    return client.post("/login", data=form)


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("demo") / "acme"
    assert run_demo(root, 20) == 0
    context = RunContext.from_loaded(load_model(root))
    auth = Auth.for_context(context, FAST)
    for name, options in USERS.items():
        auth.accounts.add(name, str(options["role"]), PASSWORD, actor="test",
                          email=options.get("email"),  # type: ignore[arg-type]
                          teams=options.get("teams", []))  # type: ignore[arg-type]
    secret = auth.accounts.enroll_totp("tess", actor="test", confirmed=True).secret
    app = create_app(context, settings=FAST)
    with TestClient(app):
        yield Site(app, auth, context, secret)
    context.close()


def wait_for(client: TestClient, run_id: int, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = re.search(r'data-testid="status">(\w+)<', client.get(f"/runs/{run_id}").text)
        assert status
        if status.group(1) not in ("queued", "running"):
            return status.group(1)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end in {timeout} s")


# --- login ----------------------------------------------------------------------------


def test_the_login_page_and_its_headers(site: Site) -> None:
    response = site.anonymous().get("/login")
    assert response.status_code == 200
    assert 'name="username"' in response.text and 'name="totp"' in response.text
    headers = response.headers
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    policy = headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    cookie = headers["set-cookie"].lower()
    assert "ferry_login_csrf=" in cookie and "httponly" in cookie and "samesite=lax" in cookie


def test_a_wrong_password_gets_the_generic_message_and_no_session(site: Site) -> None:
    client = site.anonymous()
    for name in ("alice", "nobody"):
        response = ui_login(client, name, "not the password at all")
        assert response.status_code == 401
        assert "Invalid username, password or TOTP code." in response.text
        assert "ferry_session" not in client.cookies
    assert client.get("/").status_code == 303


def test_login_sets_an_httponly_lax_session_and_goes_on(site: Site) -> None:
    client = site.anonymous()
    response = ui_login(client, "alice", PASSWORD, next="/datasets/shop.orders")
    assert response.status_code == 303
    assert response.headers["location"] == "/datasets/shop.orders"
    cookie = response.headers["set-cookie"].lower()
    assert "ferry_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    assert client.get("/datasets/shop.orders").status_code == 200
    assert client.get("/login").status_code == 303  # logged in already: straight on


def test_login_with_totp(site: Site) -> None:
    client = site.anonymous()
    totp = pyotp.TOTP(site.totp_secret)
    assert ui_login(client, "tess", PASSWORD).status_code == 401  # the code is required
    stale = totp.at(time.time() - 600)  # ten minutes old: outside the one step of skew
    if stale != totp.now():
        assert ui_login(client, "tess", PASSWORD, stale).status_code == 401
    code = totp.now()
    response = ui_login(client, "tess", PASSWORD, code, next="/runs")
    assert response.status_code == 303 and response.headers["location"] == "/runs"
    assert client.get("/runs").status_code == 200
    replay = ui_login(site.anonymous(), "tess", PASSWORD, code)
    assert replay.status_code == 401  # a code is usable once


def test_too_many_failures_say_when_to_come_back(site: Site) -> None:
    limited = AuthSettings(account_failures=2, argon2_time_cost=1, argon2_memory_kib=8192,
                           argon2_parallelism=1)
    client = TestClient(create_app(site.context, settings=limited), client=("10.9.9.9", 1),
                        follow_redirects=False)
    for _ in range(2):
        assert ui_login(client, "ghost", "wrong password here").status_code == 401
    response = ui_login(client, "ghost", "wrong password here")
    assert response.status_code == 429
    assert re.search(r"Too many attempts, try again in \d+ minutes?\.", response.text)
    assert int(response.headers["retry-after"]) > 0


def test_the_login_form_needs_its_own_token(site: Site) -> None:
    client = site.anonymous()
    client.get("/login")
    response = client.post("/login", data={"csrf": "forged", "username": "alice",
                                           "password": PASSWORD})
    assert response.status_code == 403 and "ferry_session" not in client.cookies
    fresh = site.anonymous()  # no cookie at all (another site's form)
    response = fresh.post("/login", data={"csrf": "x", "username": "alice",
                                          "password": PASSWORD})
    assert response.status_code == 403


@pytest.mark.parametrize("target", [
    "//evil.example/x", "https://evil.example/", "/\\evil.example", "\\\\evil.example",
    "javascript:alert(1)", "/%0d%0aSet-Cookie:x", "evil.example", "/ok\r\nx: y",
])
def test_next_never_leaves_the_site(site: Site, target: str) -> None:
    assert safe_next(target) in ("/", "/%0d%0aSet-Cookie:x")
    response = ui_login(site.anonymous(), "alice", PASSWORD, next=target)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\"))


def test_pages_redirect_to_login_and_come_back(site: Site) -> None:
    client = site.anonymous()
    response = client.get("/datasets/shop.orders?x=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fdatasets%2Fshop.orders%3Fx%3D1"
    page = client.get(response.headers["location"])
    assert 'name="next" value="/datasets/shop.orders?x=1"' in page.text
    assert client.post("/runs", data={"job": "ingest:shop.orders"}).status_code == 303


def test_logout_revokes_the_session(site: Site) -> None:
    client = site.anonymous()
    ui_login(client, "erin", PASSWORD)
    page = client.get("/")
    stolen = client.cookies["ferry_session"]
    assert client.post("/logout", data={}).status_code == 403  # no CSRF token
    response = client.post("/logout", data={"csrf": csrf_of(page.text)})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    other = site.anonymous()
    other.cookies.set("ferry_session", stolen)
    assert other.get("/").status_code == 303  # the token itself is dead, not just the cookie


# --- pages ------------------------------------------------------------------------------


def test_every_page_renders_for_an_admin(site: Site) -> None:
    client = site.as_user("admin")
    run_id = site.context.runs.list_runs(limit=1)[0].id
    for path in ("/", "/?search=orders", "/?team=shop", "/teams", "/teams/shop",
                 "/datasets/shop.orders", "/datasets/shop.customers", "/runs",
                 "/runs?failed=1", "/runs?job=ingest:shop.orders", f"/runs/{run_id}", "/plan",
                 "/admin/users", "/admin/tokens", "/admin/notify", "/admin/agents"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["x-frame-options"] == "DENY"
        assert "Log out" in response.text


def test_the_plan_page_lists_consumers_served_by_delta_sharing(site: Site) -> None:
    page = site.as_user("admin").get("/plan").text
    assert 'data-testid="shared"' in page
    assert "<li>research.notebooks: shop.daily_sales</li>" in page
    assert "deliver:research.notebooks" not in page
    api = site.as_user("admin").get("/api/v1/plan").json()
    assert {"consumer": "research.notebooks", "datasets": ["shop.daily_sales"]} in api["shared"]


def test_admins_see_how_each_notify_target_is_doing(site: Site) -> None:
    page = site.as_user("admin").get("/admin/notify").text
    assert 'data-testid="notify"' in page
    assert "https://hooks.acme.example/finance" in page  # the example's targets
    assert "nats://127.0.0.1:4222 shop.datasets" in page and "waiting" in page
    api = site.as_user("admin").get("/api/v1/notify").json()
    assert {(t["consumer"], t["kind"]) for t in api["items"]} >= {
        ("finance.ledger", "webhook"), ("finance.ledger", "nats"), ("shop.reporting", "nats")}
    assert site.as_user("zed").get("/api/v1/notify").status_code == 403


def test_a_member_of_an_unrelated_team(site: Site) -> None:
    client = site.as_user("zed")
    catalog = client.get("/", params={"search": "orders"})
    assert catalog.status_code == 200 and "/datasets/shop.orders" in catalog.text
    page = client.get("/datasets/shop.orders")
    assert page.status_code == 200
    assert 'data-testid="no-rows"' in page.text and 'data-testid="sample"' not in page.text
    assert 'data-testid="run-job"' not in page.text
    for path in ("/admin/users", "/admin/tokens", "/admin/notify", "/admin/agents"):
        denied = client.get(path)
        assert denied.status_code == 403 and denied.headers["content-type"].startswith(
            "text/html") and "Only admins" in denied.text
    for path in ("/teams", "/teams/shop", "/runs", "/plan"):
        assert client.get(path).status_code == 200, path


def test_rows_follow_the_grant(site: Site) -> None:
    owner = site.as_user("alice").get("/datasets/shop.customers").text
    assert 'data-testid="sample"' in owner and "member of team shop (owner)" in owner
    assert "@" in owner  # e-mail addresses in the clear for the owning team
    consumer = site.as_user("erin").get("/datasets/shop.customers").text
    assert 'data-testid="sample"' in consumer and "consumer marketing." in consumer
    assert "masked (keyed hash): email" in consumer
    sample = consumer.split('data-testid="sample"')[1]
    assert not re.search(r"[\w.]+@[\w.]+\.\w+", sample)  # no e-mail address survives
    viewer = site.as_user("vic").get("/datasets/shop.customers").text
    assert 'data-testid="no-rows"' in viewer and "Viewers see the catalog" in viewer


def test_the_dataset_page_shows_lineage_as_a_picture(site: Site) -> None:
    response = site.as_user("zed").get("/datasets/shop.orders")
    html = response.text
    assert 'data-testid="lineage"' in html and "<svg" in html
    assert "Lineage of shop.orders" in html
    nonce = re.search(r"'nonce-([^']+)'", response.headers["content-security-policy"])
    assert nonce and f'<style nonce="{nonce.group(1)}">' in html
    for part in ("Schema", "Consumers", "Versions", "Freshness", "Classification", "Owner"):
        assert part in html


def test_search_pages_and_escaping(site: Site) -> None:
    client = site.as_user("zed")
    found = client.get("/", params={"search": "orders"}).text
    listed = set(re.findall(r'<td><a href="/datasets/([^"]+)">', found))
    assert "shop.orders" in listed and "shop.customers" not in listed
    nothing = client.get("/", params={"search": "<script>alert(1)</script>"}).text
    assert "<script>alert(1)" not in nothing and "&lt;script&gt;" in nothing
    assert "No dataset matches." in nothing


def test_error_pages_are_html_and_the_api_stays_json(site: Site) -> None:
    client = site.as_user("zed")
    page = client.get("/datasets/no.such")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "no dataset" in page.text
    assert client.get("/runs/999999").status_code == 404
    assert client.get("/teams/nope").status_code == 404
    assert client.get("/runs/abc").status_code == 400
    assert client.get(f"/runs/{2**40}").status_code == 400  # beyond any SQL INTEGER id
    api = client.get("/api/v1/datasets/no.such")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    browser = client.get("/no/such/page", headers={"Accept": "text/html"})
    assert browser.status_code == 404 and "text/html" in browser.headers["content-type"]
    machine = client.get("/no/such/page", headers={"Accept": "application/json"})
    assert machine.status_code == 404 and machine.json()["error"]["code"] == "not_found"


# --- runs -------------------------------------------------------------------------------


def test_csrf_is_required_and_tied_to_the_session(site: Site) -> None:
    alice, erin = site.as_user("alice"), site.as_user("erin")
    job = {"job": "ingest:shop.orders"}
    assert alice.post("/runs", data=job).status_code == 403
    assert alice.post("/runs", data={**job, "csrf": "0" * 64}).status_code == 403
    erins_token = csrf_of(erin.get("/").text)
    assert alice.post("/runs", data={**job, "csrf": erins_token}).status_code == 403
    assert alice.post("/runs", json={**job, "csrf": erins_token}).status_code == 415
    admin = site.as_user("admin")
    assert admin.post("/admin/users", data={"username": "mallory", "role": "admin",
                                            "password": PASSWORD}).status_code == 403
    assert site.auth.users.get("mallory") is None


def test_triggering_and_watching_a_run(site: Site) -> None:
    alice = site.as_user("alice")
    token = csrf_of(alice.get("/datasets/shop.products").text)
    response = alice.post("/runs", data={"job": "ingest:shop.products", "csrf": token})
    assert response.status_code == 303
    location = response.headers["location"]
    assert re.fullmatch(r"/runs/\d+", location), location
    run_id = int(location.rsplit("/", 1)[1])
    assert wait_for(alice, run_id) in ("succeeded", "unchanged")
    page = alice.get(location).text
    assert 'data-testid="retry"' in page and 'http-equiv="refresh"' not in page
    assert "ingest:shop.products" in page and 'data-testid="log"' in page
    other = site.as_user("zed").get(location).text
    assert 'data-testid="retry"' not in other  # zed may look, not run
    denied = site.as_user("zed").post("/runs", data={
        "job": "ingest:shop.products", "csrf": csrf_of(other)})
    assert denied.status_code == 403 and "text/html" in denied.headers["content-type"]
    unknown = alice.post("/runs", data={"job": "ingest:no.such", "csrf": token})
    assert unknown.status_code == 400 and "no job" in unknown.text


def test_the_runs_list_filters(site: Site) -> None:
    client = site.as_user("zed")
    page = client.get("/runs", params={"job": "ingest:shop.orders"}).text
    jobs = set(re.findall(r'<a href="/runs\?job=[^"]+">([^<]+)</a>', page))
    assert jobs <= {"ingest:shop.orders"}
    failed = client.get("/runs", params={"failed": "1"}).text
    assert 'class="pill succeeded"' not in failed


# --- admin ------------------------------------------------------------------------------


def test_admins_add_and_disable_users_and_revoke_tokens(site: Site) -> None:
    admin = site.as_user("admin")
    token = csrf_of(admin.get("/admin/users").text)
    weak = admin.post("/admin/users", data={"csrf": token, "username": "nina",
                                            "role": "member", "password": "short"})
    assert weak.status_code == 400 and 'data-testid="form-error"' in weak.text
    assert 'value="nina"' in weak.text and "short" not in weak.text.split("form-error")[1][:200]
    added = admin.post("/admin/users", data={"csrf": token, "username": "nina",
                                             "role": "member", "teams": ["shop", "finance"],
                                             "email": "nina@acme.example",
                                             "password": PASSWORD})
    assert added.status_code == 303
    listing = admin.get(added.headers["location"]).text
    assert "Added user nina." in listing
    user = site.auth.users.get("nina")
    assert user is not None and set(user.teams) == {"shop", "finance"}
    nina = site.anonymous()
    assert ui_login(nina, "nina", PASSWORD).status_code == 303
    tokens = admin.get("/admin/tokens").text
    assert "nina" in tokens and "this session" in tokens
    disabled = admin.post("/admin/users/nina/disable", data={"csrf": token})
    assert disabled.status_code == 303
    assert nina.get("/").status_code == 303  # its session died with it
    assert site.auth.users.get("nina").disabled  # type: ignore[union-attr]
    assert admin.post("/admin/users/admin/disable", data={"csrf": token}).status_code == 400
    spare = site.anonymous()
    ui_login(spare, "vic", PASSWORD)
    newest = max(t.id for t in site.auth.tokens.store.list(None) if t.username == "vic")
    revoked = admin.post(f"/admin/tokens/{newest}/revoke", data={"csrf": token})
    assert revoked.status_code == 303
    assert f"Revoked token {newest}." in admin.get(revoked.headers["location"]).text
    assert spare.get("/").status_code == 303
    assert admin.get("/admin/users", params={"added": "<b>hi</b>"}).text.count("Added") == 0


def test_the_static_stylesheet_is_served(site: Site) -> None:
    response = site.anonymous().get("/static/ferry.css")
    assert response.status_code == 200 and "text/css" in response.headers["content-type"]
