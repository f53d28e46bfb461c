"""``ferry serve`` as its own process, attacked over real sockets: forged forwarded
headers, and request bodies too large to hold.

Both are properties of the process an operator runs (uvicorn's configuration, the
server's memory), so these tests start ``ferry serve`` rather than the app in-process.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dataferry.server.auth import Auth
from tests.server.conftest import PASSWORD, add_user
from tests.server.live import Served, ferry_serve

pytestmark = pytest.mark.security

BODY_BYTES = 20 * 1024 * 1024
GROWTH_KIB = 8 * 1024
"""How much the server's memory may grow while refusing two 20 MiB bodies."""


def _wrong_logins(url: str, forwarded_for: list[str]) -> list[int]:
    with httpx.Client(base_url=url, timeout=60) as http:
        return [http.post("/api/v1/auth/login", headers={"X-Forwarded-For": address},
                          json={"username": "ana", "password": "not the password!"}).status_code
                for address in forwarded_for]


def _login_ips(auth: Auth) -> list[str | None]:
    return [e.client_ip for e in auth.audit.entries() if e.action == "login"]


FORGED = [f"203.0.113.{n}" for n in range(11)]


def test_forwarded_for_changes_neither_the_audit_ip_nor_the_limits_by_default(
        auth: Auth, model_root: Path) -> None:
    add_user(auth, "ana")
    with ferry_serve(model_root) as served:
        statuses = _wrong_logins(served.url, FORGED)
    assert statuses == [401] * 10 + [429]  # a new forged address each time: no new budget
    assert set(_login_ips(auth)) == {"127.0.0.1"}


def test_forwarded_for_is_believed_from_a_listed_proxy(auth: Auth, model_root: Path) -> None:
    add_user(auth, "ana")
    with ferry_serve(model_root, "--forwarded-allow-ips", "127.0.0.1") as served:
        statuses = _wrong_logins(served.url, FORGED)
    assert statuses == [401] * 11  # each address has its own budget
    assert _login_ips(auth) == FORGED


def _declared(total: int) -> Iterator[bytes]:
    yield (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Content-Type: application/json\r\n"
           + f"Content-Length: {total}\r\n\r\n".encode())
    yield from _login_body(total)


def _chunked(total: int) -> Iterator[bytes]:
    yield (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    for piece in _login_body(total):
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def _login_body(total: int) -> Iterator[bytes]:
    """A JSON login whose password makes it ``total`` bytes long, in 64 KiB pieces."""
    head, tail = b'{"username": "ana", "password": "', b'"}'
    yield head
    left = total - len(head) - len(tail)
    while left > 0:
        piece = min(left, 65536)
        yield b"a" * piece
        left -= piece
    yield tail


def _send(port: int, request: Iterator[bytes]) -> tuple[int, dict[str, object]]:
    """Send ``request`` while reading the answer (the server may stop reading and close
    before it is all sent); returns the status and the JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        def send_all() -> None:
            try:
                for piece in request:
                    if select.select([connection], [], [], 0)[0]:
                        return  # answered already
                    connection.sendall(piece)
            except OSError:
                pass  # the server closed the connection: it will not read the rest

        sender = threading.Thread(target=send_all)
        sender.start()
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and received.rstrip().endswith(b"}"):
                    break
        except ConnectionResetError:
            pass  # the server closed with the rest unread: its answer came first
        with contextlib.suppress(OSError):  # already reset, or: stop a blocked sender
            connection.shutdown(socket.SHUT_RDWR)
        sender.join()
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _normal_login(served: Served) -> int:
    return httpx.post(f"{served.url}/api/v1/auth/login", timeout=60,
                      json={"username": "ana", "password": PASSWORD}).status_code


@pytest.mark.parametrize("send", [_declared, _chunked], ids=["declared", "chunked"])
def test_a_huge_login_body_gets_413_without_the_server_reading_it(
        auth: Auth, model_root: Path, send: object) -> None:
    add_user(auth, "ana")
    assert callable(send)
    with ferry_serve(model_root) as served:
        assert _normal_login(served) == 200
        assert _send(served.port, send(2 * 1024 * 1024))[0] == 413  # warm up that path
        before = served.rss_kib()
        status, body = _send(served.port, send(BODY_BYTES))
        grown = served.rss_kib() - before
        assert status == 413, body
        assert body["error"]["code"] == "content_too_large"  # type: ignore[index]
        assert grown < GROWTH_KIB, f"the server grew by {grown} KiB"
        assert _normal_login(served) == 200
        near_limit = httpx.post(f"{served.url}/api/v1/auth/login", timeout=60,
                                content=b" " * 1_000_000 + json.dumps(
                                    {"username": "ana", "password": PASSWORD}).encode(),
                                headers={"Content-Type": "application/json"})
        assert near_limit.status_code == 200


def test_the_body_limit_is_a_flag(auth: Auth, model_root: Path) -> None:
    add_user(auth, "ana")
    with ferry_serve(model_root, "--max-body-size", "2KiB") as served:
        assert _normal_login(served) == 200
        status, body = _send(served.port, _chunked(4096))
        assert status == 413 and "2048 bytes" in str(body)
