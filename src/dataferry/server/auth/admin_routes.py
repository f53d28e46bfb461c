"""``/api/v1/users`` (admins) and ``/api/v1/tokens`` (admins: all; others: their own)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dataferry.metadata import Token, User
from dataferry.server.auth.dependency import (
    AdminPrincipal,
    AuthDependency,
    CurrentPrincipal,
    client_ip,
)
from dataferry.server.errors import Forbidden, NotFound, RecordId

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
    scopes: list[str] | None = Field(None, max_length=50)


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
def list_tokens(principal: CurrentPrincipal, auth: AuthDep) -> list[TokenOut]:
    """Live tokens: every user's for an admin, one's own otherwise."""
    owner = None if principal.is_admin else principal.user_id
    return [TokenOut.of(token) for token in auth.tokens.store.list(owner)]


@router.post("/tokens", response_model=CreatedToken, status_code=201, tags=["tokens"])
def create_token(body: NewToken, request: Request, principal: CurrentPrincipal,
                 auth: AuthDep) -> CreatedToken:
    """An API token for CI or automation, printed once."""
    username = body.user or principal.username
    if username != principal.username and not principal.is_admin:
        raise Forbidden("only an admin may create tokens for another user")
    if principal.scopes is not None:
        wider = set(body.scopes or ["(all rights)"]) - principal.scopes
        if wider:
            raise Forbidden("a scoped token cannot create a token with more scopes: "
                            f"{', '.join(sorted(wider))}")
    issued = auth.tokens.create_api(auth.accounts.get(username), body.name,
                                    expires_in=timedelta(days=body.expires_in_days),
                                    scopes=body.scopes, actor=principal.username,
                                    client_ip=client_ip(request))
    return CreatedToken(**TokenOut.of(issued.record).model_dump(), token=issued.secret)


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"])
def revoke_token(token_id: RecordId, request: Request, principal: CurrentPrincipal,
                 auth: AuthDep) -> Response:
    token = auth.tokens.store.get(token_id)
    if token is None or (token.user_id != principal.user_id and not principal.is_admin):
        raise NotFound(f"there is no live token {token_id}")
    auth.tokens.revoke(token_id, actor=principal.username, client_ip=client_ip(request))
    return Response(status_code=204)
