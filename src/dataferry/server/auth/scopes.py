"""Token scopes: the vocabulary, and the dependency every ``/api/v1`` route declares.

A route states what it needs with ``Depends(dependency.scoped(READ))`` (or one of the
``...Principal`` aliases there); ``declare_in_openapi`` copies that into the route's OpenAPI
operation as ``x-ferry-scope``, so the document says what the code enforces and a test can
walk every route with a token of each scope.

- A **login session** (an access token from ``POST /auth/login`` or the web UI) has every
  right of its user, including those only a session has (``SESSION``).
- An **API token** has the scopes it was created with; one created without scopes has
  every scope in ``SCOPES`` (all the user's rights), but never ``SESSION``: TOTP enrollment
  and password changes need a person who just proved they know the password.

A scope only narrows: ``admin`` opens the admin routes to an admin's token, not to a
member's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute

from dataferry.server.errors import BadRequest, Forbidden
from dataferry.server.principal import Principal

READ = "read"
RUN = "run"
TOKENS = "tokens"
ADMIN = "admin"
SCOPES: dict[str, str] = {
    READ: "every GET: the catalog, rows (as the user may see them), runs, lineage, plan, "
          "events, /me",
    RUN: "start runs (POST /runs)",
    TOKENS: "list, create and revoke the user's own tokens, log out",
    ADMIN: "the admin routes (users, other users' tokens, notify, model reload), on top of "
           "the admin role",
}
"""The scopes an API token may be given, and what each allows."""
SESSION = "session"
"""Not a token scope: what only a login session may do (TOTP enrollment, password change)."""
OPENAPI_KEY = "x-ferry-scope"
MARK = "ferry_scope"
"""The attribute a scope dependency carries its scope in (set by ``dependency.scoped``)."""


def check_scopes(names: Iterable[str] | None) -> list[str] | None:
    """``names`` sorted without repeats (None stays None: all the user's rights); a
    ``BadRequest`` listing the vocabulary for a name that is not a scope."""
    if names is None:
        return None
    unique = sorted(set(names))
    if not unique:
        raise BadRequest("a token without any scope could do nothing: give one or more of "
                         f"{', '.join(SCOPES)}, or none at all for all the user's rights")
    unknown = [name for name in unique if name not in SCOPES]
    if unknown:
        raise BadRequest(f"{unknown[0]!r} is not a scope; the scopes are "
                         f"{', '.join(SCOPES)} (none given: all the user's rights)")
    return unique


def has_scope(principal: Principal, scope: str) -> bool:
    """Whether the principal's token carries ``scope`` (a login session carries all)."""
    if principal.login_session:
        return True
    if scope == SESSION:
        return False
    return principal.scopes is None or scope in principal.scopes


def require_scope(principal: Principal, scope: str) -> None:
    """``Forbidden`` naming the missing scope and how to get it, unless ``has_scope``."""
    if has_scope(principal, scope):
        return
    if scope == SESSION:
        raise Forbidden("this needs a login session, not an API token: log in with "
                        "POST /api/v1/auth/login (or the web UI) and send that token")
    raise Forbidden(f"this token lacks the '{scope}' scope: create one with it "
                    f"(`ferry tokens create --scope {scope}`) or use a login session")


def route_scope(route: APIRoute) -> str | None:
    """The scope a route's dependencies demand (None: it declares none)."""
    found = set(_declared(route.dependant.dependencies))
    assert len(found) <= 1, f"{route.path} declares several scopes: {sorted(found)}"
    return found.pop() if found else None


def _declared(dependencies: list[Any]) -> Iterator[str]:
    for dependant in dependencies:
        scope = getattr(dependant.call, MARK, None)
        if isinstance(scope, str):
            yield scope
        yield from _declared(dependant.dependencies)


def declare_in_openapi(router: APIRouter) -> APIRouter:
    """``router``, each route's scope put into its OpenAPI operation as ``x-ferry-scope``
    (call it before ``include_router``: the app keeps the routes it includes as they are)."""
    for route in router.routes:
        if isinstance(route, APIRoute):
            scope = route_scope(route)
            if scope is not None:
                route.openapi_extra = {**(route.openapi_extra or {}), OPENAPI_KEY: scope}
    return router
