"""FastAPI dependencies: who is calling (``current_principal``), with which scope
(``scoped``, ``ReadPrincipal``...), and are they an admin (``require_admin``).

A request authenticates with ``Authorization: Bearer <token>`` (API clients, CI) or, for
safe methods only (GET, HEAD, OPTIONS), the ``ferry_session`` cookie (the web UI's login
session; HttpOnly, SameSite=Lax, Secure over https). A POST, PUT, PATCH or DELETE
authenticated by the cookie alone would be a request any page the user visits on a
same-site origin can send (CSRF): those need the header, which browsers never add on
their own. Anything else gets 401. The principal's teams are the user's teams in the
metadata DB plus every team whose ``owners:`` in the model name the user's e-mail.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Annotated, cast

from fastapi import Depends, Request, Response

from dataferry.metadata import Token, User
from dataferry.model.graph import ModelIndex
from dataferry.server.auth import scopes
from dataferry.server.auth.service import Auth
from dataferry.server.errors import Forbidden, Unauthorized
from dataferry.server.principal import Principal, Role

SESSION_COOKIE = "ferry_session"
COOKIE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""The methods the session cookie authenticates on ``/api/v1``: those that change nothing."""


def get_auth(request: Request) -> Auth:
    """The app's ``Auth`` (set by ``create_app``)."""
    auth = request.app.state.auth
    assert isinstance(auth, Auth)
    return auth


async def auth_dependency(request: Request) -> Auth:
    """``get_auth`` as a dependency: async, since a plain ``def`` dependency costs every
    request a hop to the thread pool and this one only reads app state."""
    return get_auth(request)


AuthDependency = Annotated[Auth, Depends(auth_dependency)]


def client_ip(request: Request) -> str:
    """The caller's address: the peer of the connection, or the address a trusted reverse
    proxy forwarded (uvicorn applies ``X-Forwarded-For`` only from the proxies listed in
    ``ferry serve --forwarded-allow-ips``; by default from none). Rate limits and the
    audit log key off it, so it must not be something a caller can simply claim."""
    return request.client.host if request.client else "unknown"


def presented_token(request: Request) -> str | None:
    """The bearer token of the request; the session cookie's only for a safe method."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    if request.method not in COOKIE_METHODS:
        return None
    return request.cookies.get(SESSION_COOKIE)


def model_teams(index: ModelIndex, email: str | None) -> set[str]:
    """Teams whose ``owners:`` list ``email`` (case-insensitively): a team's owners are
    its members."""
    if not email:
        return set()
    return set(_owned_teams(index).get(email.casefold(), ()))


_OWNED: weakref.WeakKeyDictionary[ModelIndex, dict[str, frozenset[str]]] = (
    weakref.WeakKeyDictionary())


def _owned_teams(index: ModelIndex) -> dict[str, frozenset[str]]:
    """Each owner's teams (by the case-folded address), built once per model: every
    request asks, and walking 1,000 teams' owners each time cost 0.3 ms."""
    owned = _OWNED.get(index)
    if owned is None:
        teams: dict[str, set[str]] = {}
        for name, team in index.ecosystem.teams.items():
            for owner in team.owners:
                teams.setdefault(owner.casefold(), set()).add(name)
        owned = _OWNED[index] = {owner: frozenset(names) for owner, names in teams.items()}
    return owned


def principal_of(user: User, token: Token, index: ModelIndex) -> Principal:
    # The database only ever holds these roles; anything else gets the least rights.
    role = cast(Role, user.role if user.role in ("admin", "member", "viewer") else "viewer")
    return Principal(
        user_id=user.id, username=user.username, role=role,
        teams=frozenset(set(user.teams) | model_teams(index, user.email)),
        email=user.email, token_id=token.id,
        scopes=None if token.scopes is None else frozenset(token.scopes),
        login_session=token.kind == "access")


def authenticate(auth: Auth, secret: str | None, index: ModelIndex) -> Principal | None:
    """The principal a presented token stands for, or None (no such live token, or its
    user is disabled)."""
    found = None if secret is None else auth.tokens.verify(secret)
    if found is None:
        return None
    token, user = found
    return None if user.disabled else principal_of(user, token, index)


def current_principal(request: Request, auth: AuthDependency) -> Principal:
    """The logged-in principal of this request; 401 when there is none."""
    secret = presented_token(request)
    principal = authenticate(auth, secret, request.app.state.context.index)
    if principal is None:
        if secret:
            raise Unauthorized("log in first: send 'Authorization: Bearer <token>' (the "
                               "token may have expired or been revoked)")
        if request.method not in COOKIE_METHODS and SESSION_COOKIE in request.cookies:
            raise Unauthorized(f"{request.method} needs 'Authorization: Bearer <token>': "
                               "the session cookie is accepted only for GET (against CSRF)")
        raise Unauthorized("log in first: send 'Authorization: Bearer <token>'")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def scoped(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the current principal, if its token has ``scope`` (else 403 naming
    it). The route's OpenAPI operation says so (``scopes.declare_in_openapi``)."""
    assert scope in scopes.SCOPES or scope == scopes.SESSION, scope

    async def dependency(principal: CurrentPrincipal) -> Principal:  # no I/O: no thread hop
        scopes.require_scope(principal, scope)
        return principal

    dependency.__name__ = f"require_{scope}_scope"
    setattr(dependency, scopes.MARK, scope)
    return dependency


ReadPrincipal = Annotated[Principal, Depends(scoped(scopes.READ))]
RunPrincipal = Annotated[Principal, Depends(scoped(scopes.RUN))]
TokensPrincipal = Annotated[Principal, Depends(scoped(scopes.TOKENS))]
SessionPrincipal = Annotated[Principal, Depends(scoped(scopes.SESSION))]
"""A login session (never an API token): for TOTP enrollment and password changes."""


def require_admin(principal: CurrentPrincipal) -> Principal:
    """The principal, if an admin whose token has the ``admin`` scope."""
    if not principal.is_admin:
        raise Forbidden("only an admin may do this")
    scopes.require_scope(principal, scopes.ADMIN)
    return principal


setattr(require_admin, scopes.MARK, scopes.ADMIN)
AdminPrincipal = Annotated[Principal, Depends(require_admin)]


def set_session_cookie(request: Request, response: Response, secret: str,
                       max_age: int) -> None:
    """Hand the web UI its access token: script can't read it, other sites don't send it."""
    response.set_cookie(SESSION_COOKIE, secret, max_age=max_age, httponly=True,
                        samesite="lax", secure=request.url.scheme == "https", path="/")


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax",
                           secure=request.url.scheme == "https", path="/")
