"""Login throttling as an attacker meets it: bursts of parallel guesses against real
servers, guessing from one address and from many, and what the owner can still do.

The burst tests run real uvicorn servers on loopback (two of them over one metadata
database, as two ``ferry serve`` processes would be) with argon2 costly enough that the
checks overlap; the lockout tests use the fake clock and many client addresses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from dataferry.engine.context import RunContext
from dataferry.model.load import load_model
from dataferry.server.app import create_app
from dataferry.server.auth import Auth, AuthSettings
from dataferry.server.auth.totp import code_at
from tests.conftest import FakeClock
from tests.server.conftest import PASSWORD, add_user, bearer
from tests.server.live import uvicorn_in_thread

pytestmark = pytest.mark.security

# Costly enough that 30 checks take a while (as the real default does), small enough in
# memory that a burst does not crowd the machine.
SLOW = AuthSettings(argon2_time_cost=3, argon2_memory_kib=32768, argon2_parallelism=1)
BURST = 30
ME_SECONDS = 2.0
"""How long ``GET /me`` may take while a burst of logins runs (it takes milliseconds)."""


def _burst(urls: list[str], bodies: list[dict[str, str]]) -> list[httpx.Response]:
    """POST every body to /auth/login at once, from one thread each, spread over urls."""
    start = threading.Barrier(len(bodies))
    answers: list[httpx.Response | None] = [None] * len(bodies)

    def post(number: int) -> None:
        with httpx.Client(base_url=urls[number % len(urls)], timeout=120) as http:
            start.wait()
            answers[number] = http.post("/api/v1/auth/login", json=bodies[number])

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


class Watch:
    """Calls GET /me with a token over and over in a thread; keeps the slowest answer."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.slowest = 0.0
        self.statuses: set[int] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self.stop.is_set():
                started = time.monotonic()
                self.statuses.add(http.get("/api/v1/me", headers=bearer(self.token)).status_code)
                self.slowest = max(self.slowest, time.monotonic() - started)
                time.sleep(0.02)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


@pytest.fixture
def two_servers(context: RunContext, model_root: Any, clock: FakeClock) -> Iterator[list[str]]:
    """Two servers over the same metadata database, each with its own connections."""
    with ExitStack() as stack:
        other = RunContext.from_loaded(load_model(model_root))
        stack.callback(other.close)
        yield [stack.enter_context(uvicorn_in_thread(create_app(c, settings=SLOW, now=clock)))
               for c in (context, other)]


def _token(url: str, name: str) -> str:
    response = httpx.post(f"{url}/api/v1/auth/login",
                          json={"username": name, "password": PASSWORD}, timeout=60)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _login_audit(auth: Auth, account: str) -> list[tuple[str, str | None]]:
    return [(e.outcome, (e.detail or {}).get("reason")) for e in auth.audit.entries()
            if e.action == "login" and e.object == f"user:{account}"]


def test_thirty_parallel_wrong_logins_get_no_more_password_checks_than_the_limit(
        auth: Auth, two_servers: list[str]) -> None:
    add_user(auth, "ana")
    add_user(auth, "bob")
    bob = _token(two_servers[0], "bob")
    guesses = [{"username": "ana", "password": f"guess number {n:02d}"} for n in range(BURST)]
    with Watch(two_servers[1], bob) as watch:
        answers = _burst(two_servers, guesses)
    statuses = [answer.status_code for answer in answers]
    checked = [entry for entry in _login_audit(auth, "ana") if entry[0] == "failure"]
    assert set(statuses) <= {401, 429} and statuses.count(401) <= 10, statuses
    assert checked == [("failure", "wrong password")] * statuses.count(401)
    assert all(int(a.headers["Retry-After"]) > 0 for a in answers if a.status_code == 429)
    assert watch.statuses == {200} and watch.slowest < ME_SECONDS, watch.slowest


def test_a_burst_of_logins_gets_a_few_password_checks_at_a_time_and_429_beyond(
        auth: Auth, two_servers: list[str]) -> None:
    add_user(auth, "bob")
    bob = _token(two_servers[0], "bob")
    sprayed = [{"username": f"user{n}", "password": "spray password 1"} for n in range(BURST)]
    with Watch(two_servers[0], bob) as watch:
        answers = _burst(two_servers[:1], sprayed)  # one server: one process's argon2 slots
    busy = [a for a in answers if a.status_code == 429]
    assert {a.status_code for a in answers} == {401, 429}, [a.text for a in answers]
    assert all("busy" in a.json()["error"]["message"] and a.headers["Retry-After"] == "1"
               for a in busy)
    assert watch.statuses == {200} and watch.slowest < ME_SECONDS, watch.slowest
    # What the server was too busy to check is not a failure: the IP keeps its budget.
    outcomes = [entry for n in range(BURST) for entry in _login_audit(auth, f"user{n}")]
    assert outcomes.count(("rate_limited", "server busy")) == len(busy)
    assert outcomes.count(("failure", "unknown user")) == BURST - len(busy)
    assert httpx.post(f"{two_servers[0]}/api/v1/auth/login",
                      json={"username": "bob", "password": PASSWORD}).status_code == 200


def _from(client: TestClient, address: str) -> TestClient:
    return TestClient(client.app, client=(address, 40000))


def test_an_attacker_locks_out_only_their_own_address(
        auth: Auth, client: TestClient, login: Callable[..., Any], clock: FakeClock) -> None:
    add_user(auth, "ana")
    attacker = _from(client, "203.0.113.66")
    for _ in range(10):
        assert login("ana", "not the password!", via=attacker).status_code == 401
        clock.advance(10)
    assert login("ana", via=attacker).status_code == 429  # even the right password
    assert login("ana").status_code == 200  # the owner, from her own address
    # Her login does not hand the attacker a fresh budget.
    assert login("ana", "not the password!", via=attacker).status_code == 429
    clock.advance(15 * 60)
    assert login("ana", "not the password!", via=attacker).status_code == 401


def test_guessing_from_many_addresses_closes_the_account_to_passwords_alone(
        auth: Auth, client: TestClient, login: Callable[..., Any], clock: FakeClock) -> None:
    add_user(auth, "ana")  # with TOTP
    add_user(auth, "bob")  # without
    secret = auth.accounts.enroll_totp("ana", actor="test", confirmed=True).secret
    for account in ("ana", "bob"):
        for address in range(10):  # 10 addresses x 10 guesses: each under its own limit
            bot = _from(client, f"198.51.100.{address}")
            for guess in range(10):
                assert login(account, f"guess {guess} of bot {address}", totp="123456",
                             via=bot).status_code == 401
    fresh = _from(client, "192.0.2.1")
    # Past the account's limit a password alone gets nowhere, right or wrong: same 429.
    right, wrong = login("bob", via=fresh), login("bob", "guess 11 of a bot", via=fresh)
    assert right.status_code == wrong.status_code == 429
    assert right.json() == wrong.json()
    assert login("bob", totp="123456", via=fresh).status_code == 429
    assert login("ana", via=fresh).status_code == 429
    assert login("ana", "guess 12 of a bot", totp=code_at(secret, clock()),
                 via=fresh).status_code == 429
    # The owner with her second factor still gets in, from any address not itself limited.
    assert login("ana", totp=code_at(secret, clock()), via=fresh).status_code == 200
    assert _login_audit(auth, "ana")[-1] == ("success", None)
    clock.advance(15 * 60)
    assert login("bob", via=fresh).status_code == 200


def test_totp_confirmation_is_counted_like_a_login(
        auth: Auth, client: TestClient, login: Callable[..., Any]) -> None:
    add_user(auth, "ana")
    token = login("ana").json()["access_token"]
    assert client.post("/api/v1/me/totp", headers=bearer(token),
                       json={"password": PASSWORD}).status_code == 201
    for _ in range(10):
        assert client.post("/api/v1/me/totp/confirm", headers=bearer(token),
                           json={"code": "000000", "password": PASSWORD}).status_code == 400
    assert client.post("/api/v1/me/totp/confirm", headers=bearer(token),
                       json={"code": "000000", "password": PASSWORD}).status_code == 429
