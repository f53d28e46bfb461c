"""API errors and the handlers that turn every failure into ``{"error": {code, message}}``.

    ApiError (FerryError)      an answer with a status: its message is shown to the caller
    ├── BadRequest             400 bad_request: the input is wrong (says what to change)
    ├── Unauthorized           401 unauthorized (also an AuthError)
    ├── Forbidden              403 forbidden (also an AuthError)
    ├── NotFound               404 not_found
    ├── Conflict               409 conflict
    └── RateLimited            429 rate_limited, with ``Retry-After`` seconds

Other ``FerryError``s map by kind (``AuthError`` 401, ``UsageError`` 400, transient 503);
anything else is a 500 whose body says only that the server failed: tracebacks and
exception text (which may hold paths, SQL or secrets) go to the server log, never to the
client. Validation errors (422) name the fields and what is wrong, never echo the value
sent: it may be a password.

Input the metadata database cannot hold must not become a 500 either: ``RecordId`` bounds
path ids to the id columns' range (422 outside it), and ``UNSTORABLE``/``storable`` deal
with text holding NUL (which PostgreSQL refuses) or lone surrogates (not UTF-8).
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from dataferry.errors import AuthError, FerryError, UsageError

log = logging.getLogger("dataferry.server")


class ApiError(FerryError):
    """An error the API reports with ``status`` and ``code``; the message is for the user."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError, AuthError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str = "log in first: send 'Authorization: Bearer <token>'"
                 ) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError, AuthError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class RateLimited(ApiError, AuthError):
    status, code = 429, "rate_limited"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message or f"too many failed attempts; try again in {retry_after} "
                         "seconds", headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


MAX_ID = 2**31 - 1
"""The largest id of a metadata row (the id columns are 32-bit on PostgreSQL)."""
RecordId = Annotated[int, Path(ge=1, le=MAX_ID, description="A metadata row id")]
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
"""Characters no metadata database stores: NUL (PostgreSQL refuses it in text) and lone
surrogates (they have no UTF-8 form)."""


def storable(text: str) -> str:
    """``text`` with ``UNSTORABLE`` characters replaced by U+FFFD, for values the API
    only looks up or records: such a name matches nothing, and can still be audited."""
    return UNSTORABLE.sub("\ufffd", text)


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """The one shape of every error the API returns."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def _code(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


async def _http_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    message = error.detail if isinstance(error.detail, str) else _code(error.status_code)
    return error_response(error.status_code, _code(error.status_code), message,
                          dict(error.headers or {}))


async def _validation_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        problems.append(f"{where or 'body'}: {problem.get('msg', 'invalid')}")
    return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")


async def _ferry_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, FerryError)
    if isinstance(error, ApiError):
        return error_response(error.status, error.code, str(error), error.headers)
    if isinstance(error, AuthError):
        return error_response(401, "unauthorized", str(error), {"WWW-Authenticate": "Bearer"})
    if isinstance(error, UsageError):
        return error_response(400, "bad_request", str(error))
    log.error("%s %s failed: %s", request.method, request.url.path, error)
    if error.transient:
        return error_response(503, "unavailable", "the server cannot reach a service it "
                              "needs; try again shortly", {"Retry-After": "5"})
    return error_response(500, "internal_error", "the server failed; its log says why")


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return error_response(500, "internal_error", "the server failed; its log says why")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error of ``app`` a JSON ``{"error": {...}}`` with the right status."""
    handlers: dict[Any, Any] = {
        HTTPException: _http_error,
        RequestValidationError: _validation_error,
        FerryError: _ferry_error,
        Exception: _unexpected,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
