"""The Delta Sharing protocol under ``/delta-sharing`` (docs/api.md, docs/sharing.md).

Every endpoint but ``/files/...`` needs a share token (``Authorization: Bearer``) and
sees only its consumer's share. Errors have the protocol's shape ``{"errorCode",
"message"}``: 400 for bad input, 401 for a missing, unknown, expired or revoked token,
403 for another consumer's share, 404 for what does not exist; never a 500 for input.
Query parameters and bodies are read by hand so FastAPI's 422 never answers here.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from dataferry.engine.context import RunContext
from dataferry.errors import FerryError
from dataferry.metadata import AuditLog, Clock
from dataferry.sharing.changes import ChangesError, changes
from dataferry.sharing.files import ServedFile, TableFiles, table_files
from dataferry.sharing.formats import (
    DELETION_VECTORS,
    DELTA,
    Capabilities,
    FormatError,
    capabilities,
    file_line,
    head_lines,
)
from dataferry.sharing.openapi import sharing_openapi
from dataferry.sharing.predicates import both, column_kinds, may_match, parse_hints
from dataferry.sharing.signing import URL_TTL, sign, signing_key, verify
from dataferry.sharing.sql_hints import sql_hints
from dataferry.sharing.tables import SharedTable, consumer_of, share_id, share_name, tables
from dataferry.sharing.tokens import ShareTokens

PREFIX = "/delta-sharing"
NDJSON = "application/x-ndjson; charset=utf-8"
CAPABILITIES = {"delta-sharing-capabilities": "responseformat=parquet"}
MAX_RESULTS = 1000
router = APIRouter(prefix=PREFIX, include_in_schema=False)


class SharingError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def install(app: FastAPI) -> None:
    """Mount the sharing routes and their error shape on the server."""

    async def handle(request: Request, error: Exception) -> Response:
        assert isinstance(error, SharingError)
        return JSONResponse({"errorCode": error.code, "message": error.message},
                            status_code=error.status, headers={"Cache-Control": "no-store"})

    app.add_exception_handler(SharingError, handle)
    app.include_router(router)


def _bad(message: str) -> SharingError:
    return SharingError(400, "INVALID_PARAMETER_VALUE", message)


def _missing(message: str) -> SharingError:
    return SharingError(404, "RESOURCE_DOES_NOT_EXIST", message)


def _context(request: Request) -> RunContext:
    context: RunContext = request.app.state.context
    return context


def _clock(request: Request) -> Clock:
    now: Clock = request.app.state.auth.now
    return now


def _consumer(request: Request) -> str:
    """The consumer whose share token the request carries (401 if none is live)."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise SharingError(401, "UNAUTHENTICATED", "send the share token from the profile "
                           "file as 'Authorization: Bearer <token>'")
    found = ShareTokens(_context(request).metadata, _clock(request)).find_live(secret.strip())
    if found is None:
        raise SharingError(401, "UNAUTHENTICATED", "the share token is unknown, expired or "
                           "revoked: ask the data owner for a new profile (ferry share create)")
    if found.consumer not in _context(request).index.consumers:
        raise SharingError(403, "PERMISSION_DENIED", "the consumer of this share is no longer "
                           "in the model")
    return found.consumer


def _share(request: Request, share: str) -> str:
    consumer = _consumer(request)
    if share != share_name(consumer):
        if consumer_of(_context(request), share) is None:
            raise _missing(f"share {share!r} does not exist")
        _audit(request, consumer, "share.denied", f"share:{share}", "denied")
        raise SharingError(403, "PERMISSION_DENIED", f"this token is not for share {share!r}")
    return consumer


def _audit(request: Request, consumer: str, action: str, target: str, outcome: Any,
           detail: dict[str, Any] | None = None) -> None:
    client = request.client.host if request.client else None
    AuditLog(_context(request).metadata, _clock(request)).record(
        f"share:{consumer}", action, target, outcome, client_ip=client, detail=detail)


def _page(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """``items`` cut by ``maxResults`` from ``pageToken`` on, with the next page's token."""
    raw_max = request.query_params.get("maxResults")
    raw_token = request.query_params.get("pageToken")
    try:
        limit = MAX_RESULTS if raw_max is None else int(raw_max)
    except ValueError:
        raise _bad(f"maxResults {raw_max!r} is not a whole number") from None
    if not 0 < limit <= MAX_RESULTS:
        raise _bad(f"maxResults must be from 1 to {MAX_RESULTS}")
    start = 0
    if raw_token:
        try:
            start = int(base64.urlsafe_b64decode(raw_token.encode()).decode())
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise _bad("pageToken is not one this server gave") from None
        if not 0 <= start <= len(items):
            raise _bad("pageToken is not one this server gave")
    page: dict[str, Any] = {"items": items[start:start + limit]}
    if start + limit < len(items):
        page["nextPageToken"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
    return page


def _table_json(table: SharedTable) -> dict[str, Any]:
    return {"name": table.name, "schema": table.schema, "share": table.share,
            "shareId": share_id(table.share), "id": table.id}


@router.get("/openapi.json")
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of these routes (no token needed: it says nothing shared)."""
    return sharing_openapi()


@router.get("/shares")
def list_shares(request: Request) -> dict[str, Any]:
    share = share_name(_consumer(request))
    return _page(request, [{"name": share, "id": share_id(share)}])


@router.get("/shares/{share}")
def get_share(share: str, request: Request) -> dict[str, Any]:
    _share(request, share)
    return {"share": {"name": share, "id": share_id(share)}}


@router.get("/shares/{share}/schemas")
def list_schemas(share: str, request: Request) -> dict[str, Any]:
    consumer = _share(request, share)
    names = sorted({t.schema for t in tables(_context(request), consumer)})
    return _page(request, [{"name": name, "share": share} for name in names])


@router.get("/shares/{share}/schemas/{schema}/tables")
def list_tables(share: str, schema: str, request: Request) -> dict[str, Any]:
    consumer = _share(request, share)
    found = [t for t in tables(_context(request), consumer) if t.schema == schema]
    if not found:
        raise _missing(f"schema {schema!r} is not in share {share!r}")
    return _page(request, [_table_json(t) for t in found])


@router.get("/shares/{share}/all-tables")
def list_all_tables(share: str, request: Request) -> dict[str, Any]:
    consumer = _share(request, share)
    return _page(request, [_table_json(t) for t in tables(_context(request), consumer)])


def _table(request: Request, share: str, schema: str, name: str) -> tuple[str, SharedTable]:
    consumer = _share(request, share)
    for table in tables(_context(request), consumer):
        if (table.schema, table.name) == (schema, name):
            return consumer, table
    raise _missing(f"table {schema}.{name} is not in share {share!r}")


def _version(request: Request, table: SharedTable, number: int | None,
             asked: Capabilities | None = None) -> TableFiles:
    context = _context(request)
    dataset = context.store.dataset(table.ref)
    if number is not None and number not in dataset.version_numbers():
        raise _missing(f"table {table.schema}.{table.name} has no version {number} (kept: "
                       f"{', '.join(map(str, dataset.version_numbers())) or 'none'})")
    try:
        version = dataset.resolve(number)
    except FerryError as error:
        raise _missing(f"table {table.schema}.{table.name}: {error}") from None
    consumer = consumer_of(context, table.share) or ""
    return table_files(context, consumer, table.need, version,
                       signed=asked is not None and asked.format == DELTA,
                       deletion_vectors=asked is not None and asked.deletion_vectors)


def _head_number(request: Request, table: SharedTable) -> int:
    dataset = _context(request).store.dataset(table.ref)
    head = dataset.head_number() if dataset.exists() else None
    if head is None:
        raise _missing(f"table {table.schema}.{table.name} has no published version yet")
    return head


@router.api_route("/shares/{share}/schemas/{schema}/tables/{name}/version",
                  methods=["GET", "HEAD"])
def table_version(share: str, schema: str, name: str, request: Request) -> Response:
    _, table = _table(request, share, schema, name)
    starting = request.query_params.get("startingTimestamp")
    number = (_head_number(request, table) if starting is None
              else _version_at(request, table, _instant(starting), starting=True))
    return Response(headers={"Delta-Table-Version": str(number), **CAPABILITIES})


def _instant(text: Any) -> datetime:
    """An ISO 8601 timestamp of a request (no zone: UTC)."""
    try:
        moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"timestamp {text!r} is not ISO 8601, e.g. 2026-12-01T00:00:00Z") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _version_at(request: Request, table: SharedTable, moment: datetime, *,
                starting: bool = False) -> int:
    """The version current at ``moment`` (``starting``: the first published at or after)."""
    dataset = _context(request).store.dataset(table.ref)
    numbers = dataset.version_numbers() if dataset.exists() else []
    published = [(n, _instant(dataset.version(n).manifest.created_at)) for n in numbers]
    if starting:
        later = [n for n, at in published if at >= moment]
        if not later:
            raise _bad(f"no version of {table.schema}.{table.name} was published at or after "
                       f"{moment.isoformat()}")
        return later[0]
    earlier = [n for n, at in published if at <= moment]
    if not earlier:
        first = published[0][1].isoformat() if published else "none yet"
        raise _bad(f"{moment.isoformat()} is before the first kept version of "
                   f"{table.schema}.{table.name} (published {first})")
    return earlier[-1]


def _head(table: SharedTable, files: TableFiles, asked: Capabilities,
          changes_from: int | None = None) -> list[dict[str, Any]]:
    return head_lines(table.id, table.name, files, asked,
                      _millis(files.version.manifest.created_at), changes_from)


class _LargeChunks(FileResponse):
    """Files sent 1 MiB a write rather than starlette's 64 KiB: clients read Parquet in
    ranges of megabytes, and each chunk is an await (bench/sharing.py)."""

    chunk_size = 1024 * 1024


def _ndjson(lines: Iterable[dict[str, Any]], version: int, asked: Capabilities) -> Response:
    body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    return Response(body, media_type=NDJSON,
                    headers={"Delta-Table-Version": str(version), **asked.header})


def _format(request: Request) -> Capabilities:
    try:
        return capabilities(request.headers.get("delta-sharing-capabilities", ""))
    except FormatError as error:
        raise _bad(str(error)) from None


@router.get("/shares/{share}/schemas/{schema}/tables/{name}/metadata")
def table_metadata(share: str, schema: str, name: str, request: Request) -> Response:
    asked = _format(request)
    _, table = _table(request, share, schema, name)
    files = _version(request, table, _head_number(request, table), asked)
    return _ndjson(_head(table, files, asked), files.version.number, asked)


@router.post("/shares/{share}/schemas/{schema}/tables/{name}/query")
async def query_table(share: str, schema: str, name: str, request: Request) -> Response:
    wanted = _format(request)
    consumer, table = _table(request, share, schema, name)
    body = await request.body()
    try:
        asked: Any = json.loads(body) if body.strip() else {}
    except ValueError:
        raise _bad("the query body is not JSON") from None
    if not isinstance(asked, dict):
        raise _bad("the query body must be a JSON object")
    if asked.get("startingVersion") is not None:
        raise _bad("a query from startingVersion (a streaming read) is not served here: "
                   "read the change feed (.../changes?startingVersion=) instead")
    version = _whole(asked, "version")
    if asked.get("timestamp") is not None:
        if version is not None:
            raise _bad("give version or timestamp, not both")
        version = _version_at(request, table, _instant(asked["timestamp"]))
    limit = _whole(asked, "limitHint")
    # deriving a consumer's file reads the whole version: off the event loop
    files = await run_in_threadpool(_version, request, table, version if version is not None
                                    else _head_number(request, table), wanted)
    kinds = column_kinds(files.schema)
    hints = both(parse_hints(asked.get("jsonPredicateHints")),
                 sql_hints(asked.get("predicateHints"), kinds))
    served = _limited([f for f in files.files if may_match(hints, f.stats, kinds)], limit)
    _audit(request, consumer, "share.query", f"table:{table.ref}", "success",
           detail={"version": files.version.number, "files": len(served),
                   "skipped": len(files.files) - len(served), "limit": limit,
                   "deletion_vectors": sum(1 for f in served if f.deletion_vector)})
    now = _clock(request)()
    expires = now + URL_TTL
    key = signing_key(_context(request).store.home)
    base = str(request.base_url).rstrip("/") + PREFIX + "/files/"
    stamp = _millis(files.version.manifest.created_at)
    lines = _head(table, files, wanted) + [
        file_line("file", f, _file_url(request, base, key, f.relative, expires),
                  files.version.number, stamp, int(expires.timestamp() * 1000), wanted,
                  vector_url=_file_url(request, base, key, f.deletion_vector.relative,
                                       expires) if f.deletion_vector else None)
        for f in served]
    return _ndjson(lines, files.version.number, wanted)


@router.get("/shares/{share}/schemas/{schema}/tables/{name}/changes")
async def table_changes(share: str, schema: str, name: str, request: Request) -> Response:
    asked = _format(request)
    consumer, table = _table(request, share, schema, name)
    params = request.query_params
    head = _head_number(request, table)
    start = _param_version(params.get("startingVersion"), "startingVersion")
    end = _param_version(params.get("endingVersion"), "endingVersion")
    if start is None and params.get("startingTimestamp") is not None:
        start = _version_at(request, table, _instant(params["startingTimestamp"]),
                            starting=True)
    if end is None and params.get("endingTimestamp") is not None:
        end = _version_at(request, table, _instant(params["endingTimestamp"]))
    if start is None:
        raise _bad("give startingVersion or startingTimestamp")
    end = head if end is None else end
    if start > end:
        raise _bad(f"startingVersion {start} is after endingVersion {end}")
    context = _context(request)
    try:
        found = await run_in_threadpool(changes, context, consumer, table.need, start, end,
                                        asked.format == DELTA)
        # the feed's files are derived ones, without vectors: so is its head (Delta
        # readers refuse a change feed of a table whose metadata turns vectors on)
        files = await run_in_threadpool(_version, request, table, end,
                                        replace(asked, reader_features=asked.reader_features
                                                - {DELETION_VECTORS}))
    except ChangesError as error:
        raise _bad(str(error)) from None
    _audit(request, consumer, "share.changes", f"table:{table.ref}", "success",
           detail={"from": start, "to": end, "files": sum(len(c.files) for c in found)})
    expires = _clock(request)() + URL_TTL
    key = signing_key(context.store.home)
    base = str(request.base_url).rstrip("/") + PREFIX + "/files/"
    lines = _head(table, files, asked, changes_from=start)
    for change in found:
        for f in change.files:
            lines.append(file_line(change.kind, f,
                                   _file_url(request, base, key, f.relative, expires),
                                   change.version.number,
                                   _millis(change.version.manifest.created_at),
                                   int(expires.timestamp() * 1000), asked, stats=False))
    return _ndjson(lines, end, asked)


def _param_version(text: str | None, field: str) -> int | None:
    if text is None:
        return None
    if not text.isdigit():
        raise _bad(f"{field} must be a whole number of 0 or more")
    return int(text)


def _whole(asked: dict[str, Any], field: str) -> int | None:
    value = asked.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{field} must be a whole number of 0 or more")
    return value


def _limited(files: list[ServedFile], limit: int | None) -> list[ServedFile]:
    """Enough files for ``limit`` rows (by their live rows), or all of them."""
    if limit is None:
        return files
    chosen, rows = [], 0
    for entry in files:
        if rows >= limit:
            break
        chosen.append(entry)
        rows += entry.live_rows
    return chosen


def _millis(created_at: str) -> int:
    return int(_instant(created_at).timestamp() * 1000)


def _file_url(request: Request, base: str, key: bytes, relative: str,
              expires: datetime) -> str:
    """A file's URL for the client: pre-signed by the bucket when the store is in one
    (the client reads the store's file from there), else this server's signed URL."""
    presigned = _context(request).store.presigned(relative, int(URL_TTL.total_seconds()))
    return presigned or base + sign(key, relative, expires)


@router.api_route("/files/{token}", methods=["GET", "HEAD"])
def get_file(token: str, request: Request) -> Response:
    context = _context(request)
    relative = verify(signing_key(context.store.home), token, _clock(request)())
    if relative is None:
        raise SharingError(403, "PERMISSION_DENIED", "this file URL is forged or expired: "
                           "query the table again for fresh URLs")
    root = context.store.root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise _missing("the file is gone (compacted or collected): query the table again")
    return _LargeChunks(path, media_type="application/octet-stream",
                        headers={"Cache-Control": "private, max-age=0"})


@router.api_route("/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
def no_such_route(rest: str, request: Request) -> Response:
    """Anything else under the prefix: the protocol's 404, not the framework's shape."""
    raise _missing(f"{request.method} {PREFIX}/{rest} is not a Delta Sharing route "
                   f"(see {PREFIX}/openapi.json)")
