"""An open ``/events`` stream ends when its token is revoked or expires or its user is
disabled, and one user cannot hold more than a few open: a real uvicorn on loopback, real
streaming clients, the re-check interval lowered from 15 s to a fraction of a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from dataferry.engine.context import RunContext
from dataferry.server import events_api
from dataferry.server.app import create_app
from dataferry.server.auth import Auth
from tests.conftest import FakeClock
from tests.server.conftest import FAST, add_user, bearer
from tests.server.live import uvicorn_in_thread

pytestmark = pytest.mark.security

RECHECK = 0.3


@pytest.fixture
def base_url(context: RunContext, clock: FakeClock,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(events_api, "RECHECK_SECONDS", RECHECK, raising=False)
    monkeypatch.setattr(events_api, "POLL_SECONDS", 0.05)
    with uvicorn_in_thread(create_app(context, settings=FAST, now=clock)) as url:
        yield url


def _stream_seconds(base_url: str, token: str, cut_off: threading.Event | None = None,
                    **params: float) -> float:
    """Open the stream, let ``cut_off`` happen once it is open, and return how long the
    stream lasted; fails if it is still open after 10 s."""
    started = time.monotonic()
    try:
        with httpx.stream("GET", f"{base_url}/api/v1/events", headers=bearer(token),
                          params=params, timeout=httpx.Timeout(10.0, read=10.0)) as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if line.startswith("retry:") and cut_off is not None:
                    cut_off.set()
    except httpx.ReadTimeout:
        pytest.fail("the stream was still open 10 s after its token stopped being valid")
    return time.monotonic() - started


@pytest.mark.parametrize("how", ["revoke the token", "disable the user"])
def test_a_stream_ends_soon_after_its_token_dies(auth: Auth, base_url: str, how: str) -> None:
    add_user(auth, "ana")
    issued = auth.tokens.create_api(auth.accounts.get("ana"), "watcher", actor="t",
                                    scopes=["read"])
    opened = threading.Event()

    def cut_off() -> None:
        assert opened.wait(10)
        time.sleep(RECHECK)  # a re-check or two with the token still good
        if how == "revoke the token":
            auth.tokens.revoke(issued.record.id, actor="admin")
        else:
            auth.accounts.disable("ana", actor="admin")
        cut_at.append(time.monotonic())

    cut_at: list[float] = []
    worker = threading.Thread(target=cut_off, daemon=True)
    worker.start()
    started = time.monotonic()
    lasted = _stream_seconds(base_url, issued.secret, opened)
    worker.join(5)
    assert cut_at, "the token was never cut off"
    assert started + lasted - cut_at[0] < RECHECK + 1.0  # the re-check interval, and a poll


def test_a_stream_without_timeout_ends_when_its_token_expires(
        auth: Auth, base_url: str) -> None:
    add_user(auth, "ana")
    issued = auth.tokens.create_api(auth.accounts.get("ana"), "short", actor="t",
                                    expires_in=timedelta(seconds=1.5))
    lasted = _stream_seconds(base_url, issued.secret)
    assert 1.0 < lasted < 1.5 + RECHECK + 1.0


def test_a_live_token_keeps_its_stream_until_the_timeout(auth: Auth, base_url: str) -> None:
    add_user(auth, "ana")
    issued = auth.tokens.create_api(auth.accounts.get("ana"), "watcher", actor="t")
    lasted = _stream_seconds(base_url, issued.secret, timeout=1.5)  # five re-checks
    assert 1.4 < lasted < 3.5


def test_one_user_cannot_hold_more_than_a_few_streams_open(
        auth: Auth, base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each stream polls through the thread pool: a loop of reconnects by one user must
    not take it from everyone else."""
    monkeypatch.setattr(events_api, "STREAMS_PER_USER", 3)
    add_user(auth, "ana")
    add_user(auth, "bob")
    ana = auth.tokens.create_api(auth.accounts.get("ana"), "w", actor="t").secret
    bob = auth.tokens.create_api(auth.accounts.get("bob"), "w", actor="t").secret
    url = f"{base_url}/api/v1/events"
    with httpx.Client(timeout=10) as client:
        opened = [client.stream("GET", url, headers=bearer(ana), params={"timeout": 20})
                  for _ in range(3)]
        responses = [stream.__enter__() for stream in opened]
        # Keep each line iterator: one dropped closes its response, and so the stream.
        lines = [response.iter_lines() for response in responses]
        try:
            for response, line in zip(responses, lines, strict=True):
                assert response.status_code == 200
                assert next(line).startswith("retry:")  # the stream is open and counted
            refused = client.get(url, headers=bearer(ana), params={"timeout": 1})
            assert refused.status_code == 429 and "Retry-After" in refused.headers
            assert "3 event streams open" in refused.json()["error"]["message"]
            with client.stream("GET", url, headers=bearer(bob),
                               params={"timeout": 0.2}) as other:
                assert other.status_code == 200  # another user is not affected
        finally:
            for stream in opened:
                stream.__exit__(None, None, None)
    deadline = time.monotonic() + 5
    while True:  # the server notices the closed connections on its next poll
        with httpx.stream("GET", url, headers=bearer(ana), params={"timeout": 0.2}) as again:
            if again.status_code == 200 or time.monotonic() > deadline:
                break
        time.sleep(0.1)
    assert again.status_code == 200
