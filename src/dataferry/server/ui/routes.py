"""The web UI's router, and logging in and out.

``router`` gathers every page (catalog, teams, datasets, runs, plan, admin); ``create_app``
includes it next to ``/api/v1``. The login form takes user name, password and the TOTP
code in one step: asking for the code on a second page would tell whoever is guessing
that the password was right, and the login service answers every failure alike.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dataferry.server.auth.dependency import (
    SESSION_COOKIE,
    AuthDependency,
    clear_session_cookie,
    client_ip,
    set_session_cookie,
)
from dataferry.server.auth.login import GENERIC_FAILURE
from dataferry.server.auth.passwords import PasswordCheckBusy
from dataferry.server.errors import Forbidden, RateLimited, Unauthorized
from dataferry.server.ui import admin, pages, runs
from dataferry.server.ui.web import (
    LOGIN_CSRF_COOKIE,
    CheckedForm,
    Form,
    LoginRequired,
    PagePrincipal,
    minutes,
    page_principal,
    redirect,
    render,
    safe_next,
)

login_router = APIRouter(include_in_schema=False)
AuthDep = AuthDependency


@login_router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, auth: AuthDep,
               next: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    """The login form; someone already logged in goes straight on to ``next``."""
    if request.cookies.get(SESSION_COOKIE):
        try:
            page_principal(request, auth)
            return redirect(safe_next(next))
        except LoginRequired:
            pass
    return _login_form(request, safe_next(next))


def _login_form(request: Request, target: str, *, error: str | None = None,
                username: str = "", status: int = 200,
                headers: dict[str, str] | None = None) -> Response:
    """The form with a fresh double-submit token in a cookie and a hidden field."""
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", {"next": target, "error": error,
                                              "username": username, "login_csrf": token},
                      status=status, headers=headers)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/login")
    return response


@login_router.post("/login")
def login(request: Request, form: Form, auth: AuthDep) -> Response:
    """Check the form's token, then log in: a session cookie and on to ``next``."""
    target = safe_next(form.one("next"))
    username = form.one("username")[:200]
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), form.one("csrf").encode()):
        return _login_form(request, target, username=username, status=403,
                           error="This login form expired: please log in again.")
    try:
        issued = auth.login.login(username, form.one("password")[:1024],
                                  form.one("totp").strip()[:64] or None, client_ip(request))
    except PasswordCheckBusy as error:  # nothing was checked or counted: just wait
        return _login_form(request, target, username=username, status=429,
                           headers={"Retry-After": str(error.retry_after)},
                           error="The server is busy checking other logins: try again in "
                                 "a moment.")
    except RateLimited as error:
        wait = minutes(error.retry_after)
        return _login_form(request, target, username=username, status=429,
                           headers={"Retry-After": str(error.retry_after)},
                           error=f"Too many attempts, try again in {wait} "
                                 f"minute{'' if wait == 1 else 's'}.")
    except Forbidden as error:  # must enroll TOTP first: the one failure worth explaining
        return _login_form(request, target, username=username, status=403, error=str(error))
    except Unauthorized:
        return _login_form(request, target, username=username, status=401,
                           error=GENERIC_FAILURE[0].upper() + GENERIC_FAILURE[1:] + ".")
    response = redirect(target)
    set_session_cookie(request, response, issued.secret,
                       int(auth.settings.access_token_ttl.total_seconds()))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@login_router.post("/logout")
def logout(request: Request, principal: PagePrincipal, _: CheckedForm,
           auth: AuthDep) -> RedirectResponse:
    """End the session: its token is revoked, not just forgotten by the browser."""
    if principal.token_id is not None:
        auth.login.logout(auth.accounts.get(principal.username), principal.token_id,
                          client_ip(request))
    response = redirect("/login")
    clear_session_cookie(request, response)
    return response


router = APIRouter(include_in_schema=False)
router.include_router(login_router)
router.include_router(pages.router)
router.include_router(runs.router)
router.include_router(admin.router)
