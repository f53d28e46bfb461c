"""``/api/v1/users`` (admins) and ``/api/v1/tokens`` (admins: all; others: their own).

The token routes need the ``tokens`` scope; another user's tokens also need the admin
role and the ``admin`` scope. A token never makes a token that can do more than itself:
an API token's new token has a subset of its scopes and expires no later than it does
(a login session may create any scopes, up to the configured longest lifetime).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dataferry.metadata import Token, User
from dataferry.server.auth import scopes
from dataferry.server.auth.dependency import (
    AdminPrincipal,
    AuthDependency,
    TokensPrincipal,
    client_ip,
)
from dataferry.server.auth.service import Auth
from dataferry.server.auth.users import normalize_username
from dataferry.server.errors import Forbidden, NotFound, RecordId
from dataferry.server.principal import Principal

router = APIRouter()
AuthDep = AuthDependency


class UserOut(BaseModel):
    username: str
    email: str | None
    role: str
    teams: list[str]
    disabled: bool
    totp_enabled: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(username=user.username, email=user.email, role=user.role,
                   teams=list(user.teams), disabled=user.disabled,
                   totp_enabled=user.totp_enabled, created_at=user.created_at)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    role: Literal["admin", "member", "viewer"]
    password: str = Field(min_length=1, max_length=1024)
    email: str | None = Field(None, max_length=320)
    teams: list[str] = Field(default_factory=list, max_length=100)
    totp_required: bool = False


class TokenOut(BaseModel):
    id: int
    user: str
    kind: str
    name: str
    scopes: list[str] | None
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, token: Token) -> TokenOut:
        return cls(id=token.id, user=token.username, kind=token.kind, name=token.name,
                   scopes=None if token.scopes is None else list(token.scopes),
                   created_at=token.created_at, expires_at=token.expires_at,
                   last_used_at=token.last_used_at)


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    user: str | None = Field(None, description="Whose token (admins only); default yourself.")
    expires_in_days: int = Field(30, ge=1, le=366)
    scopes: list[str] | None = Field(
        None, max_length=50,
        description="Any of read, run, tokens, admin; none: all the user's rights.")


class CreatedToken(TokenOut):
    token: str = Field(description="The token itself: shown once, only its hash is kept.")


@router.get("/users", response_model=list[UserOut], tags=["users"])
def list_users(_: AdminPrincipal, auth: AuthDep) -> list[UserOut]:
    return [UserOut.of(user) for user in auth.accounts.list()]


@router.post("/users", response_model=UserOut, status_code=201, tags=["users"])
def add_user(body: NewUser, request: Request, principal: AdminPrincipal,
             auth: AuthDep) -> UserOut:
    teams = request.app.state.context.index.ecosystem.teams
    user = auth.accounts.add(body.username, body.role, body.password, email=body.email,
                             teams=body.teams, known_teams=set(teams),
                             totp_required=body.totp_required, actor=principal.username,
                             client_ip=client_ip(request))
    return UserOut.of(user)


@router.post("/users/{name}/disable", response_model=UserOut, tags=["users"])
def disable_user(name: str, request: Request, principal: AdminPrincipal,
                 auth: AuthDep) -> UserOut:
    """Disable a user and revoke all its tokens at once; 409 for the last enabled admin."""
    auth.accounts.disable(name, actor=principal.username, client_ip=client_ip(request))
    return UserOut.of(auth.accounts.get(name))


@router.post("/users/{name}/enable", response_model=UserOut, tags=["users"])
def enable_user(name: str, request: Request, principal: AdminPrincipal,
                auth: AuthDep) -> UserOut:
    """Let a disabled user log in again; the tokens revoked when it was disabled stay
    revoked. 409 if it is not disabled."""
    return UserOut.of(auth.accounts.enable(name, actor=principal.username,
                                           client_ip=client_ip(request)))


@router.get("/tokens", response_model=list[TokenOut], tags=["tokens"])
def list_tokens(principal: TokensPrincipal, auth: AuthDep) -> list[TokenOut]:
    """Live tokens: every user's for an admin (with the ``admin`` scope), one's own
    otherwise."""
    owner = None if _may_manage_others(principal) else principal.user_id
    return [TokenOut.of(token) for token in auth.tokens.store.list(owner)]


@router.post("/tokens", response_model=CreatedToken, status_code=201, tags=["tokens"])
def create_token(body: NewToken, request: Request, principal: TokensPrincipal,
                 auth: AuthDep) -> CreatedToken:
    """An API token for CI or automation, printed once."""
    username = body.user or principal.username
    if normalize_username(username) != principal.username:
        _check_manages_others(principal, "create tokens for another user")
    wanted = scopes.check_scopes(body.scopes)
    expires_in = timedelta(days=body.expires_in_days)
    if not principal.login_session:
        _check_not_wider(auth, principal, wanted, expires_in)
    issued = auth.tokens.create_api(auth.accounts.get(username), body.name,
                                    expires_in=expires_in, scopes=wanted,
                                    actor=principal.username, client_ip=client_ip(request))
    return CreatedToken(**TokenOut.of(issued.record).model_dump(), token=issued.secret)


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"])
def revoke_token(token_id: RecordId, request: Request, principal: TokensPrincipal,
                 auth: AuthDep) -> Response:
    token = auth.tokens.store.get(token_id)
    if token is None or (token.user_id != principal.user_id and not principal.is_admin):
        raise NotFound(f"there is no live token {token_id}")
    if token.user_id != principal.user_id:
        _check_manages_others(principal, "revoke another user's token")
    auth.tokens.revoke(token_id, actor=principal.username, client_ip=client_ip(request))
    return Response(status_code=204)


def _may_manage_others(principal: Principal) -> bool:
    return principal.is_admin and scopes.has_scope(principal, scopes.ADMIN)


def _check_manages_others(principal: Principal, what: str) -> None:
    if not principal.is_admin:
        raise Forbidden(f"only an admin may {what}")
    scopes.require_scope(principal, scopes.ADMIN)


def _check_not_wider(auth: Auth, principal: Principal, wanted: list[str] | None,
                     expires_in: timedelta) -> None:
    """An API token may make a token only with its own scopes or fewer, expiring no later."""
    if principal.scopes is not None:
        wider = set(scopes.SCOPES if wanted is None else wanted) - principal.scopes
        if wider:
            raise Forbidden("a token cannot create a token with more scopes than its own "
                            f"({', '.join(sorted(principal.scopes)) or 'none'}); this one "
                            f"would add {', '.join(sorted(wider))}")
    own = None if principal.token_id is None else auth.tokens.store.get(principal.token_id)
    if own is None or auth.now() + expires_in > own.expires_at:
        left = 0 if own is None else (own.expires_at - auth.now()).days
        room = (f"ask for expires_in_days {left} or less" if left >= 1 else
                "it expires in less than a day")
        raise Forbidden(f"a token cannot create a token that outlives it: {room}, or use a "
                        "login session")
