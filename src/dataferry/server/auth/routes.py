"""``/api/v1/auth/*`` and ``/api/v1/me*``: logging in and out, who am I, setting up TOTP,
changing the password.

Setting up TOTP and changing the password take over an account if anyone but its owner
does them, so they need a login session, never an API token, and the current password
in the body (``reauth``): a stolen token alone cannot do either.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dataferry.server.auth.dependency import (
    AuthDependency,
    ReadPrincipal,
    SessionPrincipal,
    TokensPrincipal,
    clear_session_cookie,
    client_ip,
    set_session_cookie,
)
from dataferry.server.auth.reauth import prove_password
from dataferry.server.errors import Conflict

router = APIRouter(tags=["auth"])
AuthDep = AuthDependency


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(None, max_length=64,
                             description="A TOTP code, or a recovery code, once TOTP is set up.")


class LoginResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime


class Me(BaseModel):
    username: str
    email: str | None
    role: str
    teams: list[str]
    totp_enabled: bool
    token_id: int | None
    scopes: list[str] | None


class TotpEnrollment(BaseModel):
    otpauth_uri: str
    secret: str
    recovery_codes: list[str] = Field(description="Shown once: store them somewhere safe.")


CURRENT_PASSWORD = "Your current password: proof that you, not only your session, ask."


class TotpStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=1024, description=CURRENT_PASSWORD)


class TotpConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024, description=CURRENT_PASSWORD)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=1024, description=CURRENT_PASSWORD)
    new_password: str = Field(min_length=1, max_length=1024,
                              description="12 to 128 characters, not a common password.")


@router.post("/auth/login", response_model=LoginResponse)
def login(body: LoginRequest, request: Request, response: Response,
          auth: AuthDep) -> LoginResponse:
    """Exchange username, password (and TOTP code) for an access token; also sets the
    ``ferry_session`` cookie for browsers. Any failure is the same 401."""
    issued = auth.login.login(body.username, body.password, body.totp, client_ip(request))
    max_age = int(auth.settings.access_token_ttl.total_seconds())
    set_session_cookie(request, response, issued.secret, max_age)
    return LoginResponse(access_token=issued.secret, expires_at=issued.record.expires_at)


@router.post("/auth/logout", status_code=204)
def logout(request: Request, response: Response, principal: TokensPrincipal,
           auth: AuthDep) -> Response:
    """Revoke the token this request presented (and clear the session cookie)."""
    user = auth.accounts.get(principal.username)
    assert principal.token_id is not None
    auth.login.logout(user, principal.token_id, client_ip(request))
    done = Response(status_code=204)
    clear_session_cookie(request, done)
    return done


@router.get("/me", response_model=Me)
def me(principal: ReadPrincipal, auth: AuthDep) -> Me:
    user = auth.accounts.get(principal.username)
    return Me(username=principal.username, email=principal.email, role=principal.role,
              teams=sorted(principal.teams), totp_enabled=user.totp_enabled,
              token_id=principal.token_id,
              scopes=None if principal.scopes is None else sorted(principal.scopes))


@router.post("/me/totp", response_model=TotpEnrollment, status_code=201)
def enroll_totp(body: TotpStart, request: Request, principal: SessionPrincipal,
                auth: AuthDep) -> TotpEnrollment:
    """Start TOTP setup: the otpauth URI for the app and 10 recovery codes, shown once.
    Login requires TOTP only after ``POST /me/totp/confirm`` with a first code. Needs a
    login session and the current password."""
    user = auth.accounts.get(principal.username)
    if user.totp_enabled:
        raise Conflict("TOTP is already enabled; an admin can reset it with "
                       f"`ferry users totp-enroll {principal.username}`")
    prove_password(auth, user, body.password, action="user.totp_enroll",
                   client_ip=client_ip(request))
    enrollment = auth.accounts.enroll_totp(principal.username, actor=principal.username,
                                           client_ip=client_ip(request))
    return TotpEnrollment(otpauth_uri=enrollment.uri, secret=enrollment.secret,
                          recovery_codes=list(enrollment.recovery_codes))


@router.post("/me/totp/confirm", status_code=204)
def confirm_totp(body: TotpConfirm, request: Request, principal: SessionPrincipal,
                 auth: AuthDep) -> Response:
    """Finish TOTP setup with the app's current code; from now on login needs a code.
    Needs a login session and the current password."""
    user = auth.accounts.get(principal.username)
    prove_password(auth, user, body.password, action="user.totp_confirm",
                   client_ip=client_ip(request))
    auth.accounts.confirm_totp(user, body.code, client_ip=client_ip(request))
    return Response(status_code=204)


@router.post("/me/password", status_code=204)
def change_password(body: PasswordChange, request: Request, principal: SessionPrincipal,
                    auth: AuthDep) -> Response:
    """Change one's password (checked against the policy) and revoke every other token
    of the user: sessions and API tokens made by whoever may have known the old one.
    Needs a login session and the current password."""
    user = auth.accounts.get(principal.username)
    prove_password(auth, user, body.password, action="user.password",
                   client_ip=client_ip(request))
    auth.accounts.set_password(user.username, body.new_password, actor=principal.username,
                               client_ip=client_ip(request))
    revoked = auth.tokens.store.revoke_others(user.id, keep=principal.token_id)
    auth.audit.record(principal.username, "token.revoke", f"user:{user.username}", "success",
                      client_ip=client_ip(request),
                      detail={"reason": "password changed", "tokens_revoked": revoked})
    return Response(status_code=204)
