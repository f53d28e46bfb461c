"""A bucket store whose server ignores ``If-None-Match``: dataferry refuses to write there.

The "server" is moto's S3 behind a small HTTP proxy on loopback that drops the
``If-None-Match`` header from every request, as an object store without conditional
writes does (it answers such a put with 200 and overwrites).
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

from dataferry.errors import StoreError
from tests.store.conftest import orders
from tests.store.test_s3_store import S3Server, ids, keys_in, machine
from tests.store.test_s3_store import bucket as bucket  # a fixture
from tests.store.test_s3_store import s3_server as s3_server  # a fixture

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection"}


def _handler(upstream: tuple[str, int], stripped: list[str]) -> type[BaseHTTPRequestHandler]:
    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {}
            for name, value in self.headers.items():
                if name.lower() == "if-none-match":
                    stripped.append(self.path)  # what a store without the feature ignores
                    continue
                if name.lower() not in _HOP_BY_HOP:
                    headers[name] = value
            connection = http.client.HTTPConnection(*upstream, timeout=30)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            finally:
                connection.close()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Forward


@contextmanager
def dropping_if_none_match(endpoint: str) -> Iterator[tuple[str, list[str]]]:
    """A proxy to the S3 server at ``endpoint`` that drops If-None-Match: its URL, and
    the paths of the requests whose header it dropped."""
    target = urlparse(endpoint)
    assert target.hostname is not None and target.port is not None
    stripped: list[str] = []
    proxy = ThreadingHTTPServer(("127.0.0.1", 0),
                                _handler((target.hostname, target.port), stripped))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}", stripped
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(10)


@pytest.fixture
def no_conditional_writes(s3_server: S3Server, bucket: str,
                          monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """AWS_ENDPOINT_URL at such a proxy; yields the paths whose header it dropped."""
    with dropping_if_none_match(s3_server.endpoint) as (url, stripped):
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield stripped


def test_a_store_that_ignores_conditional_writes_gets_nothing(
        tmp_path: Path, bucket: str, s3_server: S3Server,
        no_conditional_writes: list[str]) -> None:
    one = machine(tmp_path, "one", bucket)
    with pytest.raises(StoreError) as refused:
        one.publish("shop.orders", orders(range(1, 4)))
    message = str(refused.value)
    assert f"store s3://{bucket}/lake: this object store ignores conditional writes" in message
    assert "nothing was published" in message and "AWS S3, MinIO, R2" in message
    assert no_conditional_writes, "the probe's conditional puts went through the proxy"

    # Nothing in the bucket (not even the genesis, nor the probe), nothing in the mirror.
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert one.dataset("shop.orders").version_numbers() == []
    assert not one.dataset("shop.orders").exists()


def test_a_writer_behind_such_a_store_cannot_add_to_a_dataset_it_can_read(
        tmp_path: Path, bucket: str, s3_server: S3Server,
        monkeypatch: pytest.MonkeyPatch) -> None:
    honest = machine(tmp_path, "honest", bucket)
    honest.publish("shop.orders", orders(range(1, 4)))
    before = keys_in(s3_server, bucket)

    with dropping_if_none_match(s3_server.endpoint) as (url, _):
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        two = machine(tmp_path, "two", bucket, keys_from=honest.root)
        assert ids(two) == [1, 2, 3]  # reading needs no conditional write
        with pytest.raises(StoreError, match="ignores conditional writes"):
            two.publish("shop.orders", orders(range(4, 6)), mode="append")
        assert keys_in(s3_server, bucket) == before  # no upload, no staged commit
        assert ids(two) == [1, 2, 3]
        assert two.dataset("shop.orders").version_numbers() == [1]  # local commit undone
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    assert ids(honest) == [1, 2, 3]
