"""Admin pages: users (list, add, disable, enable), tokens (list, revoke), Delta Sharing
tokens (list, revoke), gateway agents (list, enroll, revoke), notify targets.

They call the same services as ``/api/v1/users`` and ``/api/v1/tokens`` (``Accounts``,
``Tokens``), so the password policy, the checks and the audit entries are the ones the
API and ``ferry users`` apply; the pages only gather the form. After a change the
browser is redirected (POST-redirect-GET) so that reloading does not repeat it; the
notice it shows names only a user or token that exists, so a crafted link cannot make
the page say something of its own.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dataferry.server.auth.dependency import client_ip, get_auth, model_teams
from dataferry.server.errors import ApiError
from dataferry.server.ui.web import AdminPage, CheckedForm, PageError, context_of, redirect, render

router = APIRouter(prefix="/admin", include_in_schema=False)
Name = Annotated[str | None, Query(max_length=64)]
ROLES = ("member", "viewer", "admin")
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # an SQL INTEGER: larger ones can't exist


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, principal: AdminPage, added: Name = None,
               disabled: Name = None, enabled: Name = None) -> HTMLResponse:
    users = get_auth(request).users
    notice = (f"Added user {added}." if added and users.get(added) else
              f"Disabled user {disabled} and revoked its tokens."
              if disabled and users.get(disabled) else
              f"Enabled user {enabled}: it can log in again." if enabled and users.get(enabled)
              else None)
    return _users(request, notice=notice)


def _users(request: Request, *, notice: str | None = None, error: str | None = None,
           values: dict[str, Any] | None = None, status: int = 200) -> HTMLResponse:
    auth = get_auth(request)
    index = context_of(request).index
    users = auth.accounts.list()
    owned = {u.username: sorted(model_teams(index, u.email)) for u in users}
    return render(request, "admin_users.html", {
        "users": users, "owned": owned, "teams": sorted(index.ecosystem.teams),
        "roles": ROLES, "notice": notice,
        "error": error, "values": values or {"role": "member", "teams": []},
        "min_password": 12}, status=status, section="admin")


@router.post("/users", response_model=None)
def add_user(request: Request, principal: AdminPage,
             form: CheckedForm) -> HTMLResponse | RedirectResponse:
    """Create a user; a refused one shows the form again with the reason (no password)."""
    auth = get_auth(request)
    username, email = form.one("username").strip(), form.one("email").strip()
    role, teams = form.one("role", "member"), form.all("teams")
    totp_required = form.one("totp_required") == "on"
    values = {"username": username, "email": email, "role": role, "teams": teams,
              "totp_required": totp_required}
    try:
        user = auth.accounts.add(
            username, role, form.one("password"), email=email or None, teams=teams,
            known_teams=set(context_of(request).index.ecosystem.teams),
            totp_required=totp_required, actor=principal.username,
            client_ip=client_ip(request))
    except ApiError as error:
        return _users(request, error=str(error), values=values, status=error.status)
    return redirect(f"/admin/users?added={user.username}")


@router.post("/users/{name}/disable")
def disable_user(request: Request, principal: AdminPage, form: CheckedForm,
                 name: str) -> RedirectResponse:
    """Disable a user and revoke every token it has — but not yourself: an admin who
    locks themselves out may leave nobody able to undo it."""
    auth = get_auth(request)
    user = auth.accounts.get(name)
    if user.id == principal.user_id:
        raise PageError(400, "You cannot disable yourself; ask another admin.")
    auth.accounts.disable(user.username, actor=principal.username,
                          client_ip=client_ip(request))
    return redirect(f"/admin/users?disabled={user.username}")


@router.post("/users/{name}/enable")
def enable_user(request: Request, principal: AdminPage, form: CheckedForm,
                name: str) -> RedirectResponse:
    """Let a disabled user log in again (its old tokens stay revoked)."""
    user = get_auth(request).accounts.enable(name, actor=principal.username,
                                             client_ip=client_ip(request))
    return redirect(f"/admin/users?enabled={user.username}")


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, principal: AdminPage,
                revoked: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None
                ) -> HTMLResponse:
    """Every live token: login sessions and API tokens, whose they are, when they end."""
    tokens = get_auth(request).tokens.store.list(None)
    return render(request, "admin_tokens.html", {
        "tokens": tokens, "current": principal.token_id,
        "notice": f"Revoked token {revoked}." if revoked else None}, section="admin")


@router.post("/tokens/{token_id}/revoke")
def revoke_token(request: Request, principal: AdminPage, form: CheckedForm,
                 token_id: TokenId) -> Response:
    """Revoke one token; revoking your own session logs you out, as it should."""
    get_auth(request).tokens.revoke(token_id, actor=principal.username,
                                    client_ip=client_ip(request))
    return redirect(f"/admin/tokens?revoked={token_id}")


@router.get("/shares", response_class=HTMLResponse)
def shares_page(request: Request, principal: AdminPage,
                revoked: Annotated[str | None, Query(max_length=200)] = None) -> HTMLResponse:
    """Every live Delta Sharing token: whose consumer, who made it, when it ends."""
    from dataferry.sharing.tables import share_name
    from dataferry.sharing.tokens import ShareTokens

    context = context_of(request)
    tokens = ShareTokens(context.metadata, get_auth(request).now).list()
    known = revoked if revoked in context.index.consumers else None
    return render(request, "admin_shares.html", {
        "tokens": tokens, "shares": {t.consumer: share_name(t.consumer) for t in tokens},
        "notice": f"Revoked the share tokens of {known}." if known else None},
        section="admin")


@router.post("/shares/{consumer}/revoke")
def revoke_share(request: Request, principal: AdminPage, form: CheckedForm,
                 consumer: Annotated[str, Path(max_length=200)]) -> Response:
    """Revoke every share token of a consumer (audited as the admin)."""
    from dataferry.sharing.tokens import ShareTokens

    context = context_of(request)
    if ShareTokens(context.metadata, get_auth(request).now).revoke(
            consumer, actor=principal.username) == 0:
        raise PageError(404, f"Consumer {consumer} has no live share token.")
    return redirect(f"/admin/shares?revoked={consumer}")


@router.get("/agents", response_class=HTMLResponse)
def agents_page(request: Request, principal: AdminPage,
                revoked: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> HTMLResponse:
    """Gateway agents: network, host, last contact, version, the job each runs."""
    return _agents(request, notice=f"Revoked agent {revoked}." if revoked else None)


def _agents(request: Request, *, notice: str | None = None, token: str | None = None,
            network: str | None = None, error: str | None = None,
            status: int = 200) -> HTMLResponse:
    from dataferry.agent.queue import AgentJobs
    from dataferry.agent.registry import Agents

    context = context_of(request)
    now = get_auth(request).now
    queue = AgentJobs(context.metadata, now)
    agents = [(a, queue.running_for(a.id)) for a in Agents(context.metadata, now).list()]
    return render(request, "admin_agents.html", {
        "agents": agents, "networks": sorted(context.index.networks), "notice": notice,
        "token": token, "network": network, "error": error}, status=status, section="admin")


@router.post("/agents/enroll", response_class=HTMLResponse)
def enroll_agent(request: Request, principal: AdminPage, form: CheckedForm) -> HTMLResponse:
    """A one-time enrollment token, shown on this answer only (not a redirect: reloading
    the page must not make another one, and the token must not sit in a URL)."""
    from dataferry.agent.registry import Agents

    network = form.one("network").strip()
    if network not in context_of(request).index.networks:
        return _agents(request, error=f"No platform of the model runs in network {network!r}.",
                       status=400)
    made = Agents(context_of(request).metadata, get_auth(request).now).enroll(
        network, actor=principal.username)
    page = _agents(request, token=made.token, network=network)
    page.headers["Cache-Control"] = "no-store"  # the token: in no cache, shown once
    return page


@router.post("/agents/{agent_id}/revoke")
def revoke_agent(request: Request, principal: AdminPage, form: CheckedForm,
                 agent_id: TokenId) -> Response:
    """Revoke an agent (audited as the admin); its running job goes to another."""
    from dataferry.agent.registry import Agents

    if not Agents(context_of(request).metadata, get_auth(request).now).revoke(
            agent_id, actor=principal.username, client_ip=client_ip(request)):
        raise PageError(404, f"No live agent {agent_id}.")
    return redirect(f"/admin/agents?revoked={agent_id}")


@router.get("/notify", response_class=HTMLResponse)
def notify_page(request: Request, principal: AdminPage) -> HTMLResponse:
    """Every consumer's notify targets: delivering or failing, and why."""
    from dataferry.events.status import target_states

    return render(request, "admin_notify.html",
                  {"targets": target_states(context_of(request))}, section="admin")
