"""The OpenAPI document of the Delta Sharing routes, served at
``/delta-sharing/openapi.json`` (no token needed): what each route takes and answers, and
the protocol's error shape ``{"errorCode", "message"}`` on every 4xx. Tools and the
schemathesis tests (tests/sharing/test_fuzz.py) read it; the protocol itself is
PROTOCOL.md of Delta Sharing (docs/sharing.md).
"""

from __future__ import annotations

from typing import Any

from dataferry import __version__

NDJSON = "application/x-ndjson"
_ERROR = {"$ref": "#/components/schemas/Error"}
_MEANINGS = {400: "bad input (INVALID_PARAMETER_VALUE)",
             401: "no, unknown, expired or revoked share token (UNAUTHENTICATED)",
             403: "another consumer's share, or a forged or expired file URL "
                  "(PERMISSION_DENIED)",
             404: "no such share, schema, table, version or file (RESOURCE_DOES_NOT_EXIST)"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": _MEANINGS[code],
                        "content": {"application/json": {"schema": _ERROR}}}
            for code in codes}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _path(*names: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names]


_PAGE = [_query("maxResults", {"type": "integer", "minimum": 1, "maximum": 1000},
                "items per page (default and most: 1000)"),
         _query("pageToken", {"type": "string"}, "the nextPageToken of the page before")]
_CAPABILITIES = {"name": "delta-sharing-capabilities", "in": "header", "required": False,
                 "schema": {"type": "string"},
                 "description": "responseformat=parquet|delta[;readerfeatures=...]"}
_VERSION_HEADER = {"Delta-Table-Version": {"schema": {"type": "integer"}}}


def _listing(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
        "nextPageToken": {"type": "string"}}}


def _lines(description: str) -> dict[str, Any]:
    return {"200": {"description": description, "headers": _VERSION_HEADER,
                    "content": {NDJSON: {"schema": {"type": "string"}}}}}


def _get(summary: str, parameters: list[dict[str, Any]], ok: dict[str, Any],
         *errors: int) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": parameters,
                    "responses": {**ok, **_errors(*errors)}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}


_TABLE = "/delta-sharing/shares/{share}/schemas/{schema}/tables/{table}"
_QUERY_BODY = {"type": "object", "properties": {
    "version": {"type": "integer", "minimum": 0},
    "timestamp": {"type": "string", "description": "ISO 8601 (no zone: UTC)"},
    "limitHint": {"type": "integer", "minimum": 0},
    "jsonPredicateHints": {"type": "string", "description": "a predicate tree, as JSON"},
    "predicateHints": {"type": "array", "items": {"type": "string"},
                       "description": "SQL boolean expressions, all of which hold"}}}


def sharing_openapi() -> dict[str, Any]:
    """The OpenAPI 3.0 document of every ``/delta-sharing/`` route."""
    table = _path("share", "schema", "table")
    paths: dict[str, Any] = {
        "/delta-sharing/shares": _get("the token's share", _PAGE,
                                      _json(_listing("Share")), 400, 401),
        "/delta-sharing/shares/{share}": _get(
            "one share", _path("share"),
            _json({"type": "object", "required": ["share"],
                   "properties": {"share": {"$ref": "#/components/schemas/Share"}}}),
            401, 403, 404),
        "/delta-sharing/shares/{share}/schemas": _get(
            "a schema per producing team", _path("share") + _PAGE,
            _json(_listing("Schema")), 400, 401, 403, 404),
        "/delta-sharing/shares/{share}/schemas/{schema}/tables": _get(
            "the tables of a schema", _path("share", "schema") + _PAGE,
            _json(_listing("Table")), 400, 401, 403, 404),
        "/delta-sharing/shares/{share}/all-tables": _get(
            "every table of the share", _path("share") + _PAGE,
            _json(_listing("Table")), 400, 401, 403, 404),
        _TABLE + "/version": _get(
            "the latest version (or the first at or after startingTimestamp)",
            [*table, _query("startingTimestamp", {"type": "string"}, "ISO 8601")],
            {"200": {"description": "the version in Delta-Table-Version",
                     "headers": _VERSION_HEADER}}, 400, 401, 403, 404),
        _TABLE + "/metadata": _get(
            "protocol and metaData lines", [*table, _CAPABILITIES],
            _lines("protocol and metaData lines"), 400, 401, 403, 404),
        _TABLE + "/query": {"post": {
            "summary": "the files of a version", "parameters": [*table, _CAPABILITIES],
            "requestBody": {"required": False, "content": {
                "application/json": {"schema": _QUERY_BODY}}},
            "responses": {**_lines("protocol, metaData and a file line per file"),
                          **_errors(400, 401, 403, 404)}}},
        _TABLE + "/changes": _get(
            "the change data feed between two versions",
            [*table, _CAPABILITIES,
             _query("startingVersion", {"type": "integer", "minimum": 0}, ""),
             _query("endingVersion", {"type": "integer", "minimum": 0}, ""),
             _query("startingTimestamp", {"type": "string"}, "ISO 8601"),
             _query("endingTimestamp", {"type": "string"}, "ISO 8601")],
            _lines("protocol, metaData and the change files"), 400, 401, 403, 404),
        "/delta-sharing/files/{token}": {"get": {
            "summary": "a file's bytes by its signed URL (Range: 206)", "security": [],
            "parameters": _path("token"),
            "responses": {
                "200": {"description": "the file",
                        "content": {"application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}}}},
                **_errors(403, 404)}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "dataferry Delta Sharing", "version": __version__,
                 "description": "The Delta Sharing protocol as ferry serve answers it: "
                                "a share per consumer (docs/sharing.md)."},
        "paths": paths,
        "security": [{"shareToken": []}],
        "components": {
            "securitySchemes": {"shareToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["errorCode", "message"],
                          "additionalProperties": False,
                          "properties": {"errorCode": {"type": "string"},
                                         "message": {"type": "string"}}},
                "Share": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"}, "id": {"type": "string"}}},
                "Schema": {"type": "object", "required": ["name", "share"], "properties": {
                    "name": {"type": "string"}, "share": {"type": "string"}}},
                "Table": {"type": "object", "required": ["name", "schema", "share"],
                          "properties": {name: {"type": "string"} for name in (
                              "name", "schema", "share", "shareId", "id")}},
            }},
    }
