"""The HTTP source against a real HTTP server on loopback: pages, links, NDJSON, retries."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.http import HttpSource
from dataferry.errors import SourceError, TransientError
from dataferry.model.spec import HttpSource as HttpSpec
from dataferry.model.spec import SourceDataset
from dataferry.store.conform import Conformer

TOKEN = "tok-s3cret-0123456789"
API_KEY = "key-0987654321"

ITEMS = [  # "AMOUNT" and "ONE_TEN" are served as the JSON numbers 0.10 and 1.10
    {"id": 1, "amount": "AMOUNT", "ratio": 0.1, "big": 123456789012345678901234567890,
     "tags": ["a", "b"], "point": {"x": 1, "y": 2.5}, "doc": {"k": ["ONE_TEN", None]},
     "attrs": {"color": "red"}, "updated_at": "2024-05-01T12:00:00+02:00", "ok": True},
    {"id": 2, "amount": 2, "ratio": 1e-3, "big": None, "tags": [], "point": None,
     "doc": "plain", "attrs": {}, "updated_at": "2024-05-02T00:00:00Z", "ok": False},
    {"id": 3, "amount": 3.25, "tags": None, "updated_at": None},
    {"id": 4, "amount": 4.5, "updated_at": "2024-04-01T00:00:00Z"},
    {"id": 5, "amount": 5, "updated_at": "2024-06-01T00:00:00Z"},
]


def _dumps(body: Any) -> str:
    return json.dumps(body).replace('"AMOUNT"', "0.10").replace('"ONE_TEN"', "1.10")


def _items() -> list[Any]:
    return list(json.loads(json.dumps(ITEMS)))


Response = tuple[int, dict[str, str], bytes]


class Api:
    """The routes of the test server, and what it saw."""

    def __init__(self) -> None:
        self.base = ""
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.calls: dict[str, int] = {}

    def handle(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        self.requests.append((path, headers))
        self.calls[path] = self.calls.get(path, 0) + 1
        route: Callable[[dict[str, list[str]], dict[str, str]], Response] = getattr(
            self, "route_" + path.strip("/").replace("/", "_").replace("-", "_"), self.missing)
        return route(query, headers)

    def missing(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        return 404, {}, b'{"error": "not found"}'

    @staticmethod
    def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        text = body if isinstance(body, str) else _dumps(body)
        return status, {"Content-Type": "application/json", **(headers or {})}, text.encode()

    def route_v1_items(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        if headers.get("authorization") != f"Bearer {TOKEN}" or \
                headers.get("x-api-key") != API_KEY:
            return self.json({"error": "unauthorized"}, 401)
        page, size = int(query["page"][0]), int(query["size"][0])
        assert query["fixed"] == ["1"]  # the endpoint's own query is kept
        chunk = _items()[(page - 1) * size: page * size]
        return self.json({"data": {"items": chunk}})

    def route_v1_linked(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        after = int(query.get("after", ["0"])[0])
        chunk = _items()[after: after + 2]
        nxt = f"/v1/linked?after={after + 2}" if after + 2 < len(ITEMS) else None
        return self.json({"results": chunk, "links": {"next": nxt}})

    def route_v1_link_header(
        self, query: dict[str, list[str]], headers: dict[str, str]
    ) -> Response:
        after = int(query.get("after", ["0"])[0])
        links = {}
        if after + 3 < len(ITEMS):
            links["Link"] = f'<{self.base}/v1/link-header?after={after + 3}>; rel="next", ' \
                            f'<{self.base}/v1/link-header>; rel="first"'
        return self.json(_items()[after: after + 3], 200, links)

    def route_v1_export(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        lines = "".join(json.dumps({"id": i, "amount": f"{i}.5"}) + "\n" for i in range(2500))
        return 200, {"Content-Type": "application/x-ndjson"}, lines.encode()

    def route_v1_plain_lines(
        self, query: dict[str, list[str]], headers: dict[str, str]
    ) -> Response:
        return 200, {"Content-Type": "text/plain"}, b'{"id": 1}\n\n{"id": 2}\n'

    def route_v1_flaky(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        if self.calls["/v1/flaky"] == 1:
            return self.json({"error": "slow down"}, 429, {"Retry-After": "1"})
        return self.json([{"id": 1}])

    def route_v1_broken(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        return self.json({"error": "boom"}, 500)

    def route_v1_secret(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        return self.json({"error": f"invalid token {headers.get('authorization')}"}, 401)

    def route_v1_same(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        return self.json([{"id": 1}])

    def route_v1_loop(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        return self.json({"items": [{"id": 1}], "next": "/v1/loop?x=1"})

    def route_v1_tail(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        if "p" in query:
            return self.json({})  # the last page leaves the list out
        return self.json({"results": [{"id": 1}], "next": "/v1/tail?p=2"})

    def route_v1_object(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        return self.json({"data": [{"id": 1}], "meta": {}})

    def route_v1_html(self, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        return 200, {"Content-Type": "text/html"}, b"<html>maintenance</html>"


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, body = state.handle(parts.path, parse_qs(parts.query), headers)
            self.send_response(status)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def source(url: str, **keys: Any) -> HttpSource:
    spec = HttpSpec.model_validate({"kind": "http", "url": url, **keys})
    src = HttpSource("crm.api", spec, Path("."))
    src.retry_delays = (0.05, 0.05)
    return src


def dataset(columns: dict[str, Any], **keys: Any) -> SourceDataset:
    return SourceDataset.model_validate({"columns": columns, **keys})


def read(src: HttpSource, ds: SourceDataset, since: Any = None, batch_rows: int = 65_536
         ) -> list[pa.RecordBatch]:
    request = ReadRequest("crm.items", ds, list(ds.columns), since=since, batch_rows=batch_rows)
    try:
        return list(src.read(request).reader)
    finally:
        src.close()


def conformed(batches: list[pa.RecordBatch], ds: SourceDataset) -> list[dict[str, Any]]:
    conformer = Conformer("crm.items", ds.columns)
    return [row for b in batches for row in conformer.conform(b).to_pylist()]


ALL_TYPES = {
    "id": {"type": "int64", "nullable": False}, "amount": "decimal(10,2)", "ratio": "float32",
    "big": "decimal(40,0)", "tags": "list<string>", "point": "struct<x:int32, y:float64>",
    "doc": "json", "attrs": "map<string,string>", "updated_at": "timestamp_tz", "ok": "bool",
}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("TEST_HTTP_TOKEN", TOKEN)
    monkeypatch.setenv("TEST_API_KEY", API_KEY)
    return {"token": "${env:TEST_HTTP_TOKEN}",
            "headers": {"X-Api-Key": "${env:TEST_API_KEY}", "Accept": "application/json"}}


def test_numbered_pages_with_token_and_headers_give_exact_values(
    api: Api, secrets: dict[str, Any]
) -> None:
    ds = dataset(ALL_TYPES, endpoint="/v1/items?fixed=1", records="data.items",
                 pagination={"page_param": "page", "size_param": "size", "size": 2})
    batches = read(source(api.base + "/", **secrets), ds, batch_rows=3)
    assert [b.num_rows for b in batches] == [3, 2]
    assert [p for p, _ in api.requests] == ["/v1/items"] * 4  # 3 pages, then an empty one
    first = batches[0].to_pylist()[0]
    assert first["amount"] == "0.10" and first["ratio"] == "0.1"  # as written
    assert first["big"] == "123456789012345678901234567890"
    assert first["doc"] == '{"k":[1.10,null]}'
    rows = conformed(batches, ds)
    assert rows[0] == {
        "id": 1, "amount": Decimal("0.10"), "ratio": pa.scalar(0.1, pa.float32()).as_py(),
        "big": Decimal("123456789012345678901234567890"), "tags": ["a", "b"],
        "point": {"x": 1, "y": 2.5}, "doc": '{"k":[1.10,null]}', "attrs": [("color", "red")],
        "updated_at": datetime(2024, 5, 1, 10, tzinfo=UTC), "ok": True,
    }
    assert rows[1]["doc"] == '"plain"' and rows[1]["point"] is None and rows[1]["ok"] is False
    assert rows[2]["tags"] is None and rows[2]["amount"] == Decimal("3.25")
    assert rows[4]["ratio"] is None  # absent key: null


def test_next_link_in_the_body_and_in_the_link_header(api: Api) -> None:
    ds = dataset({"id": "int64"}, endpoint="v1/linked", records="results",
                 pagination={"next_link": "links.next"})
    assert [r["id"] for r in conformed(read(source(api.base), ds), ds)] == [1, 2, 3, 4, 5]
    assert api.calls["/v1/linked"] == 3
    header = dataset({"id": "int64"}, endpoint="v1/link-header")  # no pagination: key
    assert [r["id"] for r in conformed(read(source(api.base), header), header)] == \
        [1, 2, 3, 4, 5]
    assert api.calls["/v1/link-header"] == 2
    tail = dataset({"id": "int64"}, endpoint="v1/tail", records="results",
                   pagination={"next_link": "next"})
    assert [b.num_rows for b in read(source(api.base), tail)] == [1]


def test_ndjson_is_streamed_in_batches(api: Api) -> None:
    ds = dataset({"id": "int64", "amount": "decimal(6,1)"}, endpoint="v1/export")
    batches = read(source(api.base), ds, batch_rows=1000)
    assert [b.num_rows for b in batches] == [1000, 1000, 500]
    assert conformed(batches, ds)[-1] == {"id": 2499, "amount": Decimal("2499.5")}
    plain = dataset({"id": "int64"}, endpoint="v1/plain-lines")  # lines without a type
    assert [b.to_pylist() for b in read(source(api.base), plain)] == [[{"id": "1"},
                                                                       {"id": "2"}]]


def test_incremental_keeps_records_with_cursor_at_or_after_since(api: Api) -> None:
    ds = dataset({"id": "int64", "updated_at": "timestamp_tz"}, endpoint="v1/linked",
                 records="results", pagination={"next_link": "links.next"},
                 capture="incremental", cursor="updated_at")
    since = datetime(2024, 5, 1, 10, tzinfo=UTC)  # == record 1's 12:00+02:00
    rows = conformed(read(source(api.base), ds, since=since), ds)
    assert [r["id"] for r in rows] == [1, 2, 5]  # 3 has no cursor, 4 is older
    assert len(conformed(read(source(api.base), ds), ds)) == 5  # no since: everything


def test_429_is_retried_after_the_time_it_asks(api: Api) -> None:
    ds = dataset({"id": "int64"}, endpoint="v1/flaky")
    started = time.monotonic()
    assert read(source(api.base), ds)[0].to_pylist() == [{"id": "1"}]
    assert api.calls["/v1/flaky"] == 2 and time.monotonic() - started >= 0.9


def test_server_errors_forever_become_a_transient_error(api: Api) -> None:
    with pytest.raises(TransientError, match=r"GET http://127\.0\.0\.1:\d+/v1/broken failed "
                       r"3 times; last: HTTP 500 Internal Server Error"):
        read(source(api.base), dataset({"id": "int64"}, endpoint="v1/broken"))
    assert api.calls["/v1/broken"] == 3


def test_unreachable_server_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(TransientError, match="ConnectError") as caught:
        read(source(f"http://user:pa55word@127.0.0.1:{port}"), dataset({"id": "int64"}))
    assert "pa55word" not in str(caught.value) and "user:***@" in str(caught.value)


def test_401_is_terminal_and_never_shows_the_token(
    api: Api, secrets: dict[str, Any]
) -> None:
    src = source(api.base, **secrets)
    with pytest.raises(SourceError) as caught:
        read(src, dataset({"id": "int64"}, endpoint="v1/secret"))
    message = str(caught.value)
    assert "HTTP 401" in message and "invalid token Bearer ***" in message
    assert "check the source's token" in message
    assert TOKEN not in message and API_KEY not in message
    assert not isinstance(caught.value, TransientError)
    assert api.requests[-1][1]["authorization"] == f"Bearer {TOKEN}"
    assert api.requests[-1][1]["accept"] == "application/json"


def test_wrong_shapes_are_clear_errors(api: Api) -> None:
    cases = [
        (dataset({"id": "int64"}, endpoint="v1/object"), r"is a JSON object, not a list of "
         r"records \(its keys: data, meta\); set the dataset's records:"),
        (dataset({"id": "int64"}, endpoint="v1/object", records="data.rows"),
         r"no 'rows' at data \(found: array\)"),
        (dataset({"id": "int64"}, endpoint="v1/object", records="items"),
         r"no 'items' at the top level \(found: data, meta\)"),
        (dataset({"id": "int64"}, endpoint="v1/same", pagination={"page_param": "p"}),
         r"page 2 of .* is the same as page 1: does the endpoint take the 'p' parameter"),
        (dataset({"id": "int64"}, endpoint="v1/loop", records="items",
                 pagination={"next_link": "next"}), r"already read: the pagination loops"),
        (dataset({"id": "int64"}, endpoint="v1/html"), r"the response is not JSON \(content "
         r"type text/html\): <html>maintenance</html>"),
        (dataset({"id": "int64"}, endpoint="v1/nowhere"), r"HTTP 404 Not Found.*check the "
         r"source's url and the dataset's endpoint"),
    ]
    for ds, pattern in cases:
        with pytest.raises(SourceError, match=pattern):
            read(source(api.base), ds)
    bad = dataset({"id": "int64", "doc": "list<string>"}, endpoint="v1/linked",
                  records="results", pagination={"next_link": "links.next"})
    with pytest.raises(SourceError, match=r"record 1: column 'doc': expected an array for "
                       r"the declared list<string>, got an object"):
        read(source(api.base), bad)


def test_columns_reports_the_first_records_keys(api: Api, secrets: dict[str, Any]) -> None:
    ds = dataset(ALL_TYPES, endpoint="/v1/items?fixed=1", records="data.items",
                 pagination={"page_param": "page", "size_param": "size", "size": 2})
    src = source(api.base, **secrets)
    found = {c.name: c for c in src.columns("items", ds)}
    src.close()
    assert list(found) == ["id", "amount", "ratio", "big", "tags", "point", "doc", "attrs",
                           "updated_at", "ok"]
    assert found["id"].native_type == "integer" and found["id"].arrow_type == pa.string()
    assert found["amount"].native_type == "integer | number"
    assert found["attrs"].arrow_type == pa.map_(pa.string(), pa.string())  # fits: as read
    assert found["point"].native_type == "null | object"
    loose = dataset({"id": "int64", "tags": "int64"}, endpoint="/v1/items?fixed=1",
                    records="data.items",
                    pagination={"page_param": "page", "size_param": "size", "size": 2})
    src = source(api.base, **secrets)
    tags = {c.name: c for c in src.columns("items", loose)}["tags"]
    assert tags.arrow_type == pa.list_(pa.string())  # inferred: drift sees an array
    assert tags.native_type == "array"
