"""The HTTP source: JSON (or NDJSON) records from a REST endpoint, page after page.

Model keys: the source's ``url`` (the base), ``headers`` (values may be ``${env:..}`` /
``${file:..}`` references, resolved where the job runs) and ``token`` (a secret, sent as
``Authorization: Bearer <token>``); the dataset's ``endpoint`` (a path appended to the
url, or an absolute URL), ``records`` (the dotted path of the record list in each
response; absent = the response is the list) and ``pagination``:

- ``next_link: links.next``: the next page's URL is in the body at that path; a
  ``Link: <..>; rel="next"`` header is followed too (also without ``pagination:``);
- ``page_param: page`` (with ``size_param``/``size``, ``first_page``, default 1): pages
  are numbered; the first empty page ends the read (a shorter page does not: APIs may cap
  the page size). The same page served twice is an error (the API ignores the parameter).

See ``pages.py`` for how responses are read and ``client.py`` for timeouts, retries and
errors. Records become batches of at most ``batch_rows`` rows of the declared columns in
their transport types (``records.py``: values exact, nested values nested, scalars as
text that conform converts).

Capture ``incremental`` with a ``cursor``: the model has no key for a server-side filter,
so the endpoint is read in full every time and records are kept when their cursor value,
converted to the declared type exactly as the store converts it, is ``>= since``; records
without a cursor value are dropped (as SQL's ``cursor >= since`` drops NULLs). ``cdc`` is
not supported.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import blake3
import httpx
import pyarrow as pa
import pyarrow.compute as pc

from dataferry.connectors.base import (
    LineageName,
    ReadRequest,
    ReadResult,
    SourceColumn,
    SourceConnector,
)
from dataferry.connectors.http.client import Fetcher
from dataferry.connectors.http.pages import Page, Record, fetch_page
from dataferry.connectors.http.records import (
    ShapeError,
    infer_columns,
    records_batch,
    transport_schema,
)
from dataferry.errors import SourceError
from dataferry.model.spec import AnySource, SourceDataset
from dataferry.model.spec import HttpSource as HttpSpec
from dataferry.model.types import parse_type
from dataferry.secrets import resolve
from dataferry.store.conform import Conformer

__all__ = ["HttpSource"]


class HttpSource(SourceConnector):
    """Reads datasets from HTTP endpoints that return JSON records (module docstring)."""

    kind = "http"
    spec: HttpSpec
    timeout = httpx.Timeout(30.0, connect=10.0)
    retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0)
    """Seconds to wait before each retry of a transient failure (then TransientError)."""
    max_retry_after = 60.0
    sample_records = 100
    """Records of the first page ``columns`` looks at."""

    @classmethod
    def lineage_inputs(cls, spec: AnySource, dataset: str, dataset_spec: SourceDataset,
                       model_root: Path) -> list[LineageName]:
        assert isinstance(spec, HttpSpec)
        url = urlsplit(spec.url)  # no user, password or query string: they may hold a key
        if not url.hostname:
            return []
        port = f":{url.port}" if url.port else ""
        path = url.path.rstrip("/")
        if dataset_spec.endpoint:
            path += "/" + dataset_spec.endpoint.split("?")[0].lstrip("/")
        return [LineageName(f"{url.scheme}://{url.hostname}{port}", path or "/")]

    def __init__(self, name: str, spec: AnySource, model_root: Path) -> None:
        super().__init__(name, spec, model_root)
        self._fetcher: Fetcher | None = None

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None

    @property
    def fetcher(self) -> Fetcher:
        """The HTTP client, with the secrets resolved (here, where the job runs)."""
        if self._fetcher is None:
            headers = {}
            for key, value in self.spec.headers.items():
                secret = resolve(value, f"{self.name}: header {key}")
                assert secret is not None
                headers[key] = secret
            token = resolve(self.spec.token, f"{self.name}: token")
            self._fetcher = Fetcher(self.name, headers, token, timeout=self.timeout,
                                    delays=self.retry_delays,
                                    max_retry_after=self.max_retry_after)
        return self._fetcher

    def columns(self, dataset: str, spec: SourceDataset) -> list[SourceColumn]:
        """The keys of the first page's first records, with types inferred from their values
        (a declared column whose values fit its declared shape reports what a read gives)."""
        page = self._page(self._first_url(spec), spec)
        records = list(itertools.islice(itertools.chain.from_iterable(page.chunks),
                                        self.sample_records))
        _close(page)
        if not records:
            raise SourceError(f"{dataset}: GET {self.fetcher.show(page.url)} returned no "
                              "records, so its columns cannot be told; try again when it has "
                              "data")
        declared = {name: parse_type(column.type) for name, column in spec.columns.items()}
        return infer_columns(records, declared)

    def read(self, request: ReadRequest) -> ReadResult:
        """Stream every page's records as batches of the declared columns."""
        spec, dataset = request.spec, request.dataset
        if spec.capture == "cdc":
            raise SourceError(f"{dataset}: an http source cannot capture cdc; use snapshot or "
                              "incremental with a cursor")
        columns = [(name, parse_type(spec.columns[name].type)) for name in request.columns]
        schema = transport_schema(columns)
        keep = self._cursor_filter(request)
        rows = max(1, request.batch_rows)

        def build(records: list[Record], first: int) -> pa.RecordBatch:
            try:
                batch = records_batch(records, columns, schema)
            except ShapeError as error:
                raise SourceError(f"{dataset}: record {first + error.row + 1}: {error}") \
                    from None
            return keep(batch) if keep is not None else batch

        def batches() -> Iterator[pa.RecordBatch]:
            buffer: list[Record] = []
            done = 0
            for chunk in self._records(spec):
                buffer.extend(chunk)
                while len(buffer) >= rows:
                    yield build(buffer[:rows], done)
                    del buffer[:rows]
                    done += rows
            if buffer:
                yield build(buffer, done)

        return ReadResult(pa.RecordBatchReader.from_batches(schema, batches()))

    # --- internals -------------------------------------------------------------------

    def _url(self, spec: SourceDataset) -> httpx.URL:
        endpoint = spec.endpoint or ""
        if endpoint.startswith(("http://", "https://")):
            return httpx.URL(endpoint)
        if not endpoint:
            return httpx.URL(self.spec.url)
        return httpx.URL(self.spec.url.rstrip("/") + "/" + endpoint.lstrip("/"))

    def _page_params(self, spec: SourceDataset, number: int) -> dict[str, Any]:
        pagination = spec.pagination
        assert pagination is not None and pagination.page_param is not None
        params: dict[str, Any] = {pagination.page_param: number}
        if pagination.size_param and pagination.size:
            params[pagination.size_param] = pagination.size
        return params

    def _first_url(self, spec: SourceDataset) -> httpx.URL:
        url = self._url(spec)
        if spec.pagination and spec.pagination.page_param:
            url = url.copy_merge_params(self._page_params(spec, spec.pagination.first_page))
        return url

    def _page(self, url: httpx.URL, spec: SourceDataset, first: bool = True) -> Page:
        next_link = spec.pagination.next_link if spec.pagination else None
        return fetch_page(self.fetcher.open, url, spec.records, next_link, self.fetcher.show,
                          first)

    def _records(self, spec: SourceDataset) -> Iterator[list[Record]]:
        """Every page's records, in order."""
        pagination = spec.pagination
        if pagination and pagination.page_param:
            yield from self._numbered(spec, pagination.first_page)
            return
        url: httpx.URL | None = self._url(spec)
        seen: set[str] = set()
        while url is not None:
            page = self._page(url, spec, first=not seen)
            seen.add(str(url))
            yield from page.chunks
            url = page.next_url
            if url is not None and str(url) in seen:
                raise SourceError(f"{self.name}: the next page of {self.fetcher.show(page.url)} "
                                  f"is {self.fetcher.show(url)}, already read: the pagination "
                                  "loops")

    def _numbered(self, spec: SourceDataset, number: int) -> Iterator[list[Record]]:
        previous: bytes | None = None
        while True:
            url = self._url(spec).copy_merge_params(self._page_params(spec, number))
            page = self._page(url, spec, first=previous is None)
            digest = blake3.blake3(page.body).digest() if page.body is not None else None
            if digest is not None and digest == previous:
                _close(page)
                raise SourceError(f"{self.name}: page {number} of {self.fetcher.show(url)} is "
                                  f"the same as page {number - 1}: does the endpoint take the "
                                  f"{spec.pagination.page_param if spec.pagination else ''!r} "
                                  "parameter?")
            count = 0
            for chunk in page.chunks:
                count += len(chunk)
                yield chunk
            if count == 0:
                return
            previous, number = digest, number + 1

    def _cursor_filter(
        self, request: ReadRequest
    ) -> Callable[[pa.RecordBatch], pa.RecordBatch] | None:
        """Keeps the rows whose cursor is ``>= since`` (incremental reads with a since)."""
        spec, cursor = request.spec, request.spec.cursor
        if spec.capture != "incremental" or request.since is None:
            return None
        if cursor is None or cursor not in request.columns:
            raise SourceError(f"{request.dataset}: incremental capture needs a declared cursor "
                              "column (cursor:)")
        column = spec.columns[cursor].model_copy(update={"nullable": True})
        conformer = Conformer(request.dataset, {cursor: column})
        target: pa.DataType = conformer.schema.field(0).type
        since = _scalar(request.since, target, f"{request.dataset}: cursor {cursor!r}")

        def keep(batch: pa.RecordBatch) -> pa.RecordBatch:
            values = conformer.conform(batch.select([cursor])).column(0)
            return batch.filter(pc.greater_equal(values, since))

        return keep


def _scalar(value: Any, target: pa.DataType, what: str) -> pa.Scalar:
    try:
        scalar = value if isinstance(value, pa.Scalar) else pa.scalar(value)
        return scalar.cast(target)
    except (pa.ArrowException, TypeError, ValueError) as error:
        raise SourceError(f"{what}: cannot compare since={value!r} with values of type "
                          f"{target}: {error}") from None


def _close(page: Page) -> None:
    close = getattr(page.chunks, "close", None)
    if close is not None:
        close()

