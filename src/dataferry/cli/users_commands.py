"""``ferry users``, ``ferry tokens``, ``ferry audit`` and ``ferry serve``: running the server
and administering who may use it, on the machine that holds the metadata DB.

The command line acts with admin rights (whoever can run it can read the database), and
audits its changes as ``cli:<os user>``. Passwords are read with hidden input (twice) or
from stdin with ``--password-stdin``; secrets made here (tokens, TOTP seeds, recovery
codes) are printed once and never stored in the clear.
"""

from __future__ import annotations

import getpass
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

from dataferry.cli.common import JsonOption, ModelOption, print_json, print_table
from dataferry.errors import FerryError, UsageError

if TYPE_CHECKING:
    from dataferry.engine.context import RunContext
    from dataferry.metadata import AuditEntry, Token, User
    from dataferry.server.auth import Auth

users_app = typer.Typer(name="users", no_args_is_help=True,
                        help="Manage the users of `ferry serve`: add, list, disable, TOTP.")
tokens_app = typer.Typer(name="tokens", no_args_is_help=True,
                         help="API tokens for CI and automation: create, list, revoke.")
PasswordStdin = typer.Option(False, "--password-stdin",
                             help="Read the password from the first line of stdin.")
_DURATION = re.compile(r"(?:\d+[smhdw])+\Z")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app)
    app.add_typer(tokens_app)
    app.command("audit")(audit)
    app.command("serve")(serve)


def actor() -> str:
    """How the audit log names a change made at the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@contextmanager
def _auth(model: Any) -> Iterator[tuple[Auth, RunContext]]:
    from dataferry.cli.run_commands import _context
    from dataferry.engine.context import RunContext
    from dataferry.server.auth import Auth

    context = _context(model)
    assert isinstance(context, RunContext)
    try:
        yield Auth.for_context(context), context
    finally:
        context.close()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: stdin has no password on its first line")
        return password
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- ferry users ---------------------------------------------------------------------


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="The login name (a-z, 0-9, '.', '_', '-')."),
    role: str = typer.Option(..., "--role", metavar="admin|member|viewer",
                             help="admin: everything; member: its teams' data; viewer: read."),
    team: list[str] = typer.Option([], "--team", metavar="T",
                                   help="A team the user is a member of (repeatable)."),
    email: str | None = typer.Option(None, "--email", metavar="E",
                                     help="E-mail: makes the user a member of every team "
                                          "whose owners list it."),
    require_totp: bool = typer.Option(False, "--require-totp",
                                      help="The user may log in only once TOTP is set up."),
    password_stdin: bool = PasswordStdin,
    model: ModelOption = None,
) -> None:
    """Add a user (there is no default account: the first one is an admin made here)."""
    with _auth(model) as (auth, context):
        password = _read_password(password_stdin)
        user = auth.accounts.add(name, role, password, email=email, teams=team,
                                 known_teams=set(context.ecosystem.teams),
                                 totp_required=require_totp, actor=actor())
    typer.echo(f"added {user.role} {user.username}"
               + (f" (teams: {', '.join(user.teams)})" if user.teams else ""))


@users_app.command("list")
def users_list(model: ModelOption = None, json_out: JsonOption = False) -> None:
    """List users: role, teams (also those whose owners list its e-mail), e-mail, TOTP."""
    from dataferry.server.auth.dependency import model_teams

    with _auth(model) as (auth, context):
        found = auth.accounts.list()
        by_email = {u.username: sorted(model_teams(context.index, u.email) - set(u.teams))
                    for u in found}
    if json_out:
        print_json([{**_user_json(u), "email_teams": by_email[u.username]} for u in found])
        return
    if not found:
        typer.echo("no users yet: add the first admin with "
                   "`ferry users add NAME --role admin`")
        return
    print_table(["user", "role", "teams", "e-mail", "totp", "status"], [
        [user.username, user.role,
         ", ".join([*user.teams, *(f"{t} (owner by e-mail)" for t in by_email[user.username])])
         or "-",
         user.email or "-",
         "on" if user.totp_enabled else ("required" if user.totp_required else "-"),
         "DISABLED" if user.disabled else "enabled"]
        for user in found
    ])


def _user_json(user: User) -> dict[str, Any]:
    return {"username": user.username, "email": user.email, "role": user.role,
            "teams": list(user.teams), "disabled": user.disabled,
            "totp_enabled": user.totp_enabled, "totp_required": user.totp_required,
            "created_at": _iso(user.created_at)}


@users_app.command("disable")
def users_disable(name: str = typer.Argument(..., help="The user to disable."),
                  model: ModelOption = None) -> None:
    """Disable a user: it can no longer log in, and all its tokens are revoked."""
    with _auth(model) as (auth, _):
        revoked = auth.accounts.disable(name, actor=actor())
    typer.echo(f"disabled {name.lower()}; revoked {revoked} token(s)")


@users_app.command("enable")
def users_enable(name: str = typer.Argument(..., help="The user to enable again."),
                 model: ModelOption = None) -> None:
    """Let a disabled user log in again (its old tokens stay revoked)."""
    with _auth(model) as (auth, _):
        user = auth.accounts.enable(name, actor=actor())
    typer.echo(f"enabled {user.username}: it can log in again (earlier tokens stay revoked)")


@users_app.command("reset-password")
def users_reset_password(name: str = typer.Argument(..., help="Whose password."),
                         password_stdin: bool = PasswordStdin,
                         model: ModelOption = None) -> None:
    """Set a new password for a user."""
    with _auth(model) as (auth, _):
        auth.accounts.get(name)  # fail before asking for a password
        auth.accounts.set_password(name, _read_password(password_stdin), actor=actor())
    typer.echo(f"password of {name.lower()} changed")


@users_app.command("totp-enroll")
def users_totp_enroll(name: str = typer.Argument(..., help="Whose authenticator to set up."),
                      model: ModelOption = None) -> None:
    """Set up (or reset) TOTP: prints the otpauth URI, a QR code and 10 recovery codes,
    once. Login requires a code from now on."""
    import segno

    with _auth(model) as (auth, _):
        enrollment = auth.accounts.enroll_totp(name, actor=actor(), confirmed=True)
    typer.echo(f"TOTP for {name.lower()}: scan this with an authenticator app, or enter the "
               "URI by hand")
    typer.echo(enrollment.uri)
    segno.make(enrollment.uri, error="m").terminal(out=sys.stdout, compact=True)
    typer.echo("recovery codes (each works once; shown only now, store them safely):")
    for code in enrollment.recovery_codes:
        typer.echo(f"  {code}")


# --- ferry tokens --------------------------------------------------------------------


def _duration(text: str) -> timedelta:
    from dataferry.model.spec import duration_seconds

    if not _DURATION.match(text) or duration_seconds(text) == 0:
        raise UsageError(f"--expires {text!r} is not a duration: write e.g. 12h, 30d or 2w")
    return timedelta(seconds=duration_seconds(text))


@tokens_app.command("create")
def tokens_create(
    user: str = typer.Option(..., "--user", metavar="NAME", help="The user the token acts as."),
    name: str = typer.Option(..., "--name", metavar="LABEL",
                             help="What uses the token, e.g. ci-nightly."),
    expires: str = typer.Option("30d", "--expires", metavar="DURATION",
                                help="Lifetime, e.g. 12h, 30d, 2w (at most 366d)."),
    scope: list[str] = typer.Option([], "--scope", metavar="S",
                                    help="Limit the token to a scope (repeatable): read, run, "
                                         "tokens or admin; default: all the user's rights."),
    model: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """Create an API token; it is printed once (only its hash is kept)."""
    ttl = _duration(expires)
    with _auth(model) as (auth, _):
        issued = auth.tokens.create_api(auth.accounts.get(user), name, expires_in=ttl,
                                        scopes=scope or None, actor=actor())
    if json_out:
        print_json({**_token_json(issued.record), "token": issued.secret})
        return
    typer.echo(issued.secret)
    typer.echo(f"token {issued.record.id} for {issued.record.username}, expires "
               f"{_iso(issued.record.expires_at)}; it is shown only now", err=True)


@tokens_app.command("list")
def tokens_list(
    user: str | None = typer.Option(None, "--user", metavar="NAME", help="Only this user's."),
    all_tokens: bool = typer.Option(False, "--all", help="Include expired and revoked tokens."),
    model: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """List tokens (never the tokens themselves): id, user, kind, name, expiry, last use."""
    with _auth(model) as (auth, _):
        owner = None if user is None else auth.accounts.get(user).id
        found = auth.tokens.store.list(owner, include_dead=all_tokens)
    if json_out:
        print_json([_token_json(t) for t in found])
        return
    if not found:
        typer.echo("no live tokens")
        return
    print_table(["id", "user", "kind", "name", "expires", "last used", "scopes"], [
        [str(token.id), token.username, token.kind, token.name,
         "revoked" if token.revoked_at else _iso(token.expires_at) or "never",
         _iso(token.last_used_at) or "never",
         ",".join(token.scopes) if token.scopes is not None else "all"]
        for token in found
    ])


def _token_json(token: Token) -> dict[str, Any]:
    return {"id": token.id, "user": token.username, "kind": token.kind, "name": token.name,
            "scopes": None if token.scopes is None else list(token.scopes),
            "created_at": _iso(token.created_at), "expires_at": _iso(token.expires_at),
            "revoked_at": _iso(token.revoked_at), "last_used_at": _iso(token.last_used_at)}


@tokens_app.command("revoke")
def tokens_revoke(token_id: int = typer.Argument(..., metavar="ID", help="From `ferry tokens list`."),
                  model: ModelOption = None) -> None:
    """Revoke a token now (access or API)."""
    with _auth(model) as (auth, _):
        token = auth.tokens.revoke(token_id, actor=actor())
    typer.echo(f"revoked token {token_id} ({token.kind}, {token.username}, {token.name})")


# --- ferry audit ---------------------------------------------------------------------


def _since(text: str) -> datetime:
    if _DURATION.match(text):
        return datetime.now(UTC) - _duration(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise UsageError(f"--since {text!r}: give a time (2026-01-31 or 2026-01-31T12:00Z) "
                         "or a duration back from now (24h, 7d)") from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def audit(
    since: str | None = typer.Option(None, "--since", metavar="T",
                                     help="From this time (ISO 8601, UTC if no zone) or this "
                                          "long ago (24h, 7d)."),
    limit: int = typer.Option(1000, "--limit", min=1, metavar="N",
                              help="At most the newest N entries."),
    model: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """The audit log, oldest first: logins, token and user changes (who, what, outcome, IP)."""
    start = None if since is None else _since(since)
    with _auth(model) as (auth, _):
        entries = auth.audit.entries(start, limit)
    if json_out:
        print_json([_audit_json(e) for e in entries])
        return
    if not entries:
        typer.echo("the audit log is empty")
    for entry in entries:
        detail = " ".join(f"{k}={v}" for k, v in (entry.detail or {}).items())
        typer.echo(f"{_iso(entry.at)} {entry.actor} {entry.action} {entry.object or '-'} "
                   f"{entry.outcome} {entry.client_ip or '-'} {detail}".rstrip())


def _audit_json(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": _iso(entry.at), "actor": entry.actor,
            "action": entry.action, "object": entry.object, "outcome": entry.outcome,
            "client_ip": entry.client_ip, "detail": entry.detail}


# --- ferry serve ---------------------------------------------------------------------


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8400, "--port", min=1, max=65535, help="Port to listen on."),
    no_scheduler: bool = typer.Option(False, "--no-scheduler",
                                      help="Serve only; run no jobs (another process does)."),
    require_totp: bool = typer.Option(False, "--require-totp",
                                      help="Every user must have TOTP set up to log in."),
    forwarded_allow_ips: str = typer.Option(
        "", "--forwarded-allow-ips", metavar="IPS",
        help="Reverse proxies (comma-separated addresses or networks, '*' for any) whose "
             "X-Forwarded-For/-Proto the server believes. Default: none, the caller's "
             "own address counts."),
    max_body_size: str = typer.Option(
        "1MiB", "--max-body-size", metavar="SIZE",
        help="Largest request body accepted (bytes, or with KiB, MiB); larger get 413."),
    store: str | None = typer.Option(
        None, "--store", metavar="DIR|s3://BUCKET/PREFIX",
        help="Serve this store (a folder or a bucket) for replication only: no model, no "
             "users (needs --anonymous)."),
    anonymous: bool = typer.Option(False, "--anonymous",
                                   help="With --store: serve it to anyone, read-only."),
    model: ModelOption = None,
) -> None:
    """Run the server: REST API under /api/v1 and, unless --no-scheduler, the scheduler.

    SIGHUP (or POST /api/v1/model/reload) loads and checks the model again and serves it;
    a model with errors is refused and the running one stays."""
    import gc

    from dataferry.cli.run_commands import _context
    from dataferry.engine.context import RunContext
    from dataferry.server.app import create_app, run_server
    from dataferry.server.auth import AuthSettings
    from dataferry.server.model_reload import reload_on_sighup

    if store is not None or anonymous:  # docs/replication.md
        from dataferry.cli.replication_commands import serve_store

        if store is None:
            raise UsageError("--anonymous serves a store to anyone: give it with --store DIR")
        _check_port_free(host, port)
        serve_store(host, port, store, anonymous)
        return
    proxies = _trusted_proxies(forwarded_allow_ips)
    body_limit = _size(max_body_size)
    _check_port_free(host, port)
    context = _context(model)
    assert isinstance(context, RunContext)
    try:
        app = create_app(context, scheduler=not no_scheduler,
                         settings=AuthSettings(require_totp=require_totp),
                         max_body_size=body_limit)
        reload_on_sighup(app)  # `kill -HUP`: load, check and serve the changed model
        if app.state.auth.users.count() == 0:
            typer.echo("no users yet: nobody can log in until you create the first admin with\n"
                       "  ferry users add NAME --role admin --email you@example.com", err=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"listening on {host}: put a TLS proxy in front, tokens and passwords "
                       "must not cross a network in clear text", err=True)
        # The loaded model and catalog are millions of objects that live as long as the
        # process: keep the collector's full passes from walking them (300-500 ms pauses
        # with 10,000 datasets, each one a stalled request; bench/server_load.py).
        gc.collect()
        gc.freeze()
        # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 (or whatever
        # FORWARDED_ALLOW_IPS says): any local caller could forge its address for the
        # audit log and the per-IP login limits.
        run_server(app, host=host, port=port, log_level="info", proxy_headers=bool(proxies),
                   forwarded_allow_ips=proxies or None)
    finally:
        gc.unfreeze()  # let shutdown free them: extension modules report what it cannot
        context.close()


def _trusted_proxies(listed: str) -> list[str]:
    """``--forwarded-allow-ips``: the addresses and networks it names (checked now)."""
    import ipaddress

    proxies = [entry.strip() for entry in listed.split(",") if entry.strip()]
    for entry in proxies:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise UsageError(f"--forwarded-allow-ips: {entry!r} is not an IP address or "
                             "network; list your reverse proxies' addresses, e.g. "
                             "127.0.0.1,10.0.0.0/8") from None
    return proxies


_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB)?\Z")
_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def _size(text: str) -> int:
    """``--max-body-size``: ``1048576``, ``512KiB``, ``1MiB`` -> bytes."""
    found = _SIZE.match(text.strip())
    if found is None or int(found[1]) == 0:
        raise UsageError(f"--max-body-size: {text!r} is not a size; write bytes or a number "
                         "with KiB, MiB or GiB, e.g. 1MiB")
    return int(found[1]) * _UNITS[found[2]]


def _check_port_free(host: str, port: int) -> None:
    """Fail now, in one line, if ``host:port`` is taken (another ``ferry serve``?)."""
    import socket

    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UsageError(f"--host {host}: not an address this machine has ({error})") from None
    family, kind, _, _, address = addresses[0]
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            raise FerryError(f"cannot listen on {host}:{port}: {error.strerror}; is another "
                             "ferry serve running? Stop it or pick another --port") from None
