"""The plumbing every web UI page shares: templates, sessions, CSRF, forms, error pages.

Why each piece is the way it is:

- **Sessions** are the ``ferry_session`` cookie the login sets (an access token; HttpOnly,
  SameSite=Lax). Pages read only the cookie, never an ``Authorization`` header: a
  browser never sends one on its own, and CSRF protection is about what it does send.
  Only a login session counts: an API token put into the cookie is no session (it would
  carry none of its scopes' limits into the pages). A page without a valid session
  redirects to ``/login?next=<where you were>``.
- **CSRF**: every POST form carries ``csrf`` = HMAC-SHA256 keyed by the session's secret
  token. It is tied to the session and needs no server state; another site can neither
  read the cookie (HttpOnly) nor the page, so it cannot compute or copy it. The login
  form, which has no session yet, uses a double-submit cookie instead (so nobody can log
  a victim into an attacker's account).
- **Forms** are parsed here (``application/x-www-form-urlencoded`` only, size-capped)
  rather than with ``python-multipart``: the UI never uploads files, and one fewer
  dependency is one fewer parser facing the network.
- **Headers**: every HTML response gets a strict Content-Security-Policy (no inline
  script or style without the per-response nonce), ``X-Frame-Options: DENY``,
  ``Referrer-Policy: same-origin``, ``nosniff`` and ``no-store`` (pages show data).
- **Errors** on UI routes (and on unknown paths a browser asks for) render as HTML
  pages; ``/api/v1`` keeps its JSON errors: the HTML handlers wrap the JSON ones and
  reuse their status and message.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import inspect
import json
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader
from starlette.templating import Jinja2Templates

from dataferry.engine.context import RunContext
from dataferry.server.auth.dependency import (
    SESSION_COOKIE,
    AuthDependency,
    authenticate,
)
from dataferry.server.principal import Principal

HERE = Path(__file__).parent
STATIC = HERE / "static"
MAX_FORM_BYTES = 64 * 1024
LOGIN_CSRF_COOKIE = "ferry_login_csrf"
_CSRF_MESSAGE = b"dataferry web ui csrf v1"
TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not allowed here",
          409: "Conflict", 413: "Too large", 415: "Unsupported form", 429: "Too many attempts",
          500: "Server error", 503: "Unavailable"}

templates = Jinja2Templates(env=Environment(loader=FileSystemLoader(HERE / "templates"),
                                            autoescape=True, trim_blocks=True,
                                            lstrip_blocks=True))
NONE = "\u2013"  # an en dash: what a table cell shows for "no value"
templates.env.filters["number"] = lambda value: NONE if value is None else f"{value:,}"
templates.env.filters["moment"] = lambda value: _moment(value)


def _moment(value: Any) -> str:
    """A timestamp as people read it: ``2026-03-01 12:34:56Z`` (seconds, UTC)."""
    if value is None:
        return NONE
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    text = text.replace("T", " ").replace("+00:00", "Z")
    head, dot, rest = text.partition(".")
    return head + ("Z" if dot and rest.endswith("Z") else "")


class LoginRequired(Exception):
    """Raised by page dependencies without a valid session: becomes a redirect to /login."""


class PageError(Exception):
    """An error page with ``status`` and a message meant for the user."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def context_of(request: Request) -> RunContext:
    context: RunContext = request.app.state.context
    return context


# --- sessions and CSRF ------------------------------------------------------------------


def csrf_token(session_secret: str) -> str:
    """The CSRF token of a session: only someone holding the session cookie can make it."""
    return hmac.new(session_secret.encode(), _CSRF_MESSAGE, hashlib.sha256).hexdigest()


def page_principal(request: Request, auth: AuthDependency) -> Principal:
    """The logged-in user of a page request, from the session cookie holding a login
    session's token (not an API token); else LoginRequired."""
    secret = request.cookies.get(SESSION_COOKIE)
    principal = authenticate(auth, secret, context_of(request).index)
    if secret is None or principal is None or not principal.login_session:
        raise LoginRequired()
    request.state.principal = principal
    request.state.session_secret = secret
    return principal


PagePrincipal = Annotated[Principal, Depends(page_principal)]


def page_admin(principal: PagePrincipal) -> Principal:
    """The principal if an admin (a page session is a login session: all its rights)."""
    if not principal.is_admin:
        raise PageError(403, "Only admins may see this page.")
    return principal


AdminPage = Annotated[Principal, Depends(page_admin)]


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site, never another site.

    Only ``/path?query`` is accepted; ``//host``, ``/\\host`` (browsers read a backslash
    as a slash), schemes, control characters and anything else become ``/``.
    """
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith("//"):
        return "/"
    return target


# --- forms ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormData:
    """A parsed urlencoded form: ``one(name)`` the first value, ``all(name)`` every value."""

    fields: Mapping[str, list[str]] = field(default_factory=dict)

    def one(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default

    def all(self, name: str) -> list[str]:
        return list(self.fields.get(name, []))


async def read_form(request: Request) -> FormData:
    """The request's urlencoded form (no body: an empty form); 415 for another body
    type, 413 beyond 64 KiB."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PageError(413, "That form is too large.")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and kind != "application/x-www-form-urlencoded":
        raise PageError(415, "Send this form from its page.")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as error:
        raise PageError(400, "That form could not be read.") from error
    return FormData(parsed)


Form = Annotated[FormData, Depends(read_form)]


def checked_form(request: Request, _: PagePrincipal, form: Form) -> FormData:
    """The form of a logged-in POST, if its CSRF token matches the session; else 403."""
    expected = csrf_token(request.state.session_secret)
    if not hmac.compare_digest(form.one("csrf").encode(), expected.encode()):
        raise PageError(403, "This form is out of date or did not come from dataferry: "
                             "reload the page and try again.")
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


# --- rendering ----------------------------------------------------------------------------


def csp_nonce(request: Request) -> str:
    """This response's nonce for the inline ``<style>`` of the lineage picture."""
    nonce = getattr(request.state, "csp_nonce", None)
    if not isinstance(nonce, str):
        nonce = secrets.token_urlsafe(16)
        request.state.csp_nonce = nonce
    return nonce


def security_headers(request: Request) -> dict[str, str]:
    nonce = csp_nonce(request)
    return {
        "Content-Security-Policy": (
            f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; "
            f"style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


def render(request: Request, name: str, values: Mapping[str, Any] | None = None,
           status: int = 200, section: str | None = None,
           headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """A page from template ``name``, with the header (who is logged in, the logout form)
    and the security headers every HTML response carries."""
    principal = getattr(request.state, "principal", None)
    secret = getattr(request.state, "session_secret", None)
    context = {"principal": principal, "csrf": csrf_token(secret) if secret else "",
               "nonce": csp_nonce(request), "section": section, **(values or {})}
    response = templates.TemplateResponse(request, name, context, status_code=status,
                                          headers={**security_headers(request),
                                                   **(headers or {})})
    return response


def redirect(location: str) -> RedirectResponse:
    """After a POST: 303, so the browser follows with a GET (reloading does not repost)."""
    return RedirectResponse(location, status_code=303)


def login_redirect(request: Request) -> RedirectResponse:
    """To the login page, coming back here afterwards (for GETs; a POST returns home)."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = safe_next(here) if request.method == "GET" else "/"
    location = "/login" if target == "/" else f"/login?next={quote(target, safe='')}"
    return RedirectResponse(location, status_code=303)


def error_page(request: Request, status: int, message: str,
               headers: Mapping[str, str] | None = None) -> HTMLResponse:
    return render(request, "error.html", {"status": status, "message": message,
                                          "title": TITLES.get(status, "Error")},
                  status=status, headers=headers)


# --- error handlers -----------------------------------------------------------------------

Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def wants_html(request: Request, api_prefix: str) -> bool:
    """Whether an error of this request should be a page: a UI route, or an unknown
    path a browser navigated to. ``/api/...`` always answers JSON."""
    path = request.url.path
    if path == api_prefix or path.startswith(api_prefix + "/"):
        return False
    endpoint = request.scope.get("endpoint")
    if endpoint is not None:
        return str(getattr(endpoint, "__module__", "")).startswith(__package__ or "-")
    return "text/html" in request.headers.get("accept", "")


def _html_or(json_handler: Handler, api_prefix: str) -> Handler:
    """A handler that answers as ``json_handler`` does, but as a page where one is wanted."""

    async def handle(request: Request, error: Exception) -> Response:
        answer = json_handler(request, error)
        response = await answer if inspect.isawaitable(answer) else answer
        if not wants_html(request, api_prefix):
            return response
        if response.status_code == 401:
            return login_redirect(request)
        status = response.status_code
        message = "The server failed; its log says why." if status >= 500 else "Error."
        if status < 500:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                message = json.loads(bytes(response.body))["error"]["message"]
        if status == 422:  # a malformed address or form field: no such page
            status, message = 400, f"That address or form is not valid: {message}"
        kept = {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
        return error_page(request, status, message, kept)

    return handle


def install_error_pages(app: FastAPI, api_prefix: str) -> None:
    """Turn the app's JSON error handlers into HTML-or-JSON ones, and handle the UI's own
    ``LoginRequired`` (redirect) and ``PageError`` (page). Call after the JSON ones."""
    for kind, handler in list(app.exception_handlers.items()):
        if kind not in (LoginRequired, PageError):
            app.add_exception_handler(kind, _html_or(handler, api_prefix))

    async def login_required(request: Request, _: Exception) -> Response:
        return login_redirect(request)

    async def page_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, PageError)
        return error_page(request, error.status, error.message, error.headers)

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(PageError, page_error)


def minutes(seconds: int) -> int:
    """Whole minutes, rounded up: "try again in 1 minute" rather than in 0."""
    return max(1, math.ceil(seconds / 60))
