"""One page of an HTTP endpoint: its records, and where the next page is.

A JSON response is read whole (one page at a time is in memory); the records are the
list at the dataset's ``records:`` dotted path (``data.items``; a number indexes a list),
or the response itself when ``records:`` is absent. An NDJSON response (content type
``application/x-ndjson``, ``application/jsonl``...) is streamed line by line, one record
per line; a response of another content type that is not one JSON document but JSON
lines is read as lines too.

A missing ``records:`` path is an error on the first page, and no records on later ones.
The next page's URL is the value at ``pagination.next_link`` in the body (relative URLs
are resolved against the page's URL; absent, null or empty = last page), else the
``Link: <url>; rel="next"`` header (RFC 8288), which is followed whenever a response has
one and pagination is not by page number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from dataferry.connectors.http.records import json_kind, loads
from dataferry.errors import SourceError, TransientError

__all__ = ["Page", "fetch_page"]

NDJSON_TYPES = frozenset({
    "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonl",
    "application/jsonlines", "application/x-jsonlines", "application/json-lines",
})
CHUNK_RECORDS = 1024
"""NDJSON records handed on at a time."""

Record = dict[str, Any]


@dataclass
class Page:
    """A fetched page: ``chunks`` yields its records (and closes the response)."""

    url: httpx.URL
    chunks: Iterator[list[Record]]
    next_url: httpx.URL | None
    body: bytes | None  # the whole body of a JSON page (to spot a page served twice)


def _media(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower()


def _is_ndjson(response: httpx.Response) -> bool:
    return _media(response) in NDJSON_TYPES


def lookup(body: Any, path: str, what: str, strict: bool) -> Any:
    """The value at dotted ``path`` in ``body``; a missing key is None unless ``strict``."""
    value = body
    for depth, part in enumerate(path.split(".")):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and \
                -len(value) <= int(part) < len(value):
            value = value[int(part)]
        elif value is None or not strict:
            return None
        else:
            at = ".".join(path.split(".")[:depth]) or "the top level"
            keys = ", ".join(list(value)[:20]) if isinstance(value, dict) else json_kind(value)
            raise SourceError(f"{what}: the response has no {part!r} at {at} (found: {keys}); "
                              f"check records: {path}")
    return value


def _records(body: Any, path: str | None, what: str, strict: bool) -> list[Record]:
    value = body if path is None else lookup(body, path, what, strict)
    if value is None:
        return []
    if isinstance(value, dict) and path is None:
        raise SourceError(f"{what}: the response is a JSON object, not a list of records "
                          f"(its keys: {', '.join(list(value)[:20])}); set the dataset's "
                          "records: to the dotted path of the list, e.g. data.items")
    if not isinstance(value, list):
        raise SourceError(f"{what}: {path or 'the response'} is {json_kind(value)}, not a "
                          "list of records")
    for index, record in enumerate(value):
        if not isinstance(record, dict):
            raise SourceError(f"{what}: record {index} of the page is a JSON "
                              f"{json_kind(record)}, not an object")
    return value


def _lines(lines: Iterable[str | bytes], what: str) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = loads(line)
        except ValueError as error:
            raise SourceError(f"{what}: line {number} is not valid JSON ({error})") from None
        if not isinstance(record, dict):
            raise SourceError(f"{what}: line {number} is a JSON {json_kind(record)}, not an "
                              "object")
        chunk.append(record)
        if len(chunk) >= CHUNK_RECORDS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _byte_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _streamed(response: httpx.Response, what: str) -> Iterator[list[Record]]:
    try:
        yield from _lines(_byte_lines(response.iter_bytes(1 << 16)), what)
    except httpx.TransportError as error:
        raise TransientError(f"{what}: the connection broke while reading the response "
                             f"({type(error).__name__}); it will be retried") from None
    finally:
        response.close()


def fetch_page(
    open_url: Callable[[httpx.URL, Callable[[httpx.Response], bool]], httpx.Response],
    url: httpx.URL,
    records: str | None,
    next_link: str | None,
    show: Callable[[httpx.URL], str],
    first: bool = True,
) -> Page:
    """GET one page (``open_url`` is ``Fetcher.open``) and find its records and next URL.

    On the ``first`` page a missing ``records`` path is an error (a typo in the model);
    on later pages it means no records (some APIs leave the list out of the last page).
    """
    response = open_url(url, _is_ndjson)
    what = f"GET {show(response.url)}"
    link = response.links.get("next", {}).get("url")
    if _is_ndjson(response):
        next_url = response.url.join(link) if link else None
        return Page(response.url, _streamed(response, what), next_url, None)
    raw = response.content
    response.close()
    try:
        body = loads(raw)
    except ValueError as error:
        if _media(response) in ("application/json", "text/json") or \
                _media(response).endswith("+json"):
            raise SourceError(f"{what}: the response is not valid JSON ({error})") from None
        lines = raw.splitlines()
        if len(lines) < 2:
            shown = " ".join(raw[:200].decode("utf-8", "replace").split())
            raise SourceError(f"{what}: the response is not JSON (content type "
                              f"{_media(response) or 'none'}): {shown}") from None
        return Page(response.url, _lines(lines, what), _join(response.url, link), raw)
    found = lookup(body, next_link, what, strict=False) if next_link else None
    if found is not None and not isinstance(found, str):
        raise SourceError(f"{what}: {next_link} is {json_kind(found)}, not a URL")
    return Page(response.url, iter([_records(body, records, what, first)]),
                _join(response.url, found or link), raw)


def _join(base: httpx.URL, link: str | None) -> httpx.URL | None:
    return base.join(link) if link else None
