"""Who is asking: the authenticated user behind a request, as every route sees it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["admin", "member", "viewer"]


@dataclass(frozen=True)
class Principal:
    """A logged-in user (or an API token acting for one).

    ``teams`` are the teams the user is a member of: those the metadata DB lists for the
    user, plus every team whose ``owners:`` in the model name the user's e-mail address
    (a team's owners are its members). ``scopes`` are an API token's scopes; None for a
    login session or an API token made without scopes (all the user's rights).
    ``login_session`` says the token came from a login (an access token): only such a
    principal may enroll TOTP or change the password (``auth.scopes``).
    """

    user_id: int
    username: str
    role: Role
    teams: frozenset[str]
    email: str | None = None
    token_id: int | None = None
    scopes: frozenset[str] | None = None
    login_session: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def member_of(self, team: str) -> bool:
        return self.is_admin or team in self.teams
