"""A lying peer for tests: a real HTTP proxy on loopback (stdlib ``http.server``) in
front of an honest ``ferry serve``, that changes what it passes on as ``mode`` says."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

Tamper = Callable[[str, bytes], bytes]
"""(request path, honest body) -> the body the proxy sends instead."""


class Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.tamper: Tamper | None = None
        self.url = ""
        self.requests: list[tuple[str, str | None]] = []
        """(path, Range header) of every request passed on."""


@contextmanager
def lying_peer(upstream: str) -> Iterator[Proxy]:
    proxy = Proxy(upstream)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("authorization", "range")}
            proxy.requests.append((self.path, self.headers.get("range")))
            honest = httpx.get(proxy.upstream + self.path, headers=headers, timeout=30)
            body = honest.content
            try:
                if proxy.tamper is not None and honest.status_code < 300:
                    body = proxy.tamper(self.path, body)
            except Stall as stall:
                self.send_response(honest.status_code)
                self.send_header("content-length", str(stall.length))
                self.end_headers()
                self.wfile.write(stall.sent)
                self.wfile.flush()
                stall.release.wait(60)
                return
            self.send_response(honest.status_code)
            for name in ("content-type", "content-range", "accept-ranges"):
                if name in honest.headers:
                    self.send_header(name, honest.headers[name])
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


def on_data_files(change: Callable[[bytes], bytes]) -> Tamper:
    def tamper(path: str, body: bytes) -> bytes:
        return change(body) if "/files/" in path and path.endswith(".parquet") else body

    return tamper


def flip_a_byte(body: bytes) -> bytes:
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 0x01]) + body[middle + 1:]


def on_manifests(change: Callable[[dict[str, Any]], None]) -> Tamper:
    def tamper(path: str, body: bytes) -> bytes:
        if "/manifests" not in path:
            return body
        page = json.loads(body)
        change(page)
        return json.dumps(page).encode()

    return tamper


def stall_after_half(release: threading.Event) -> Tamper:
    """A large data file's first half, then a stall until ``release`` (the body is cut
    there): a download that a test kills midway."""

    def tamper(path: str, body: bytes) -> bytes:
        if "/files/" in path and path.endswith(".parquet") and len(body) > 4 << 20:
            raise Stall(body[: len(body) // 2], len(body), release)
        return body

    return tamper


class Stall(Exception):
    def __init__(self, sent: bytes, length: int, release: threading.Event) -> None:
        super().__init__("stall")
        self.sent, self.length, self.release = sent, length, release
