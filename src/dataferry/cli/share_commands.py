"""``ferry share``: Delta Sharing profiles for partners (docs/sharing.md).

``create`` issues a consumer's bearer token and writes the profile file a partner's
client (pandas, Spark, Power BI) reads; only the token's hash is kept. ``revoke`` ends
every token of the consumer at once. Both are audited as ``cli:<os user>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dataferry.cli.common import JsonOption, ModelOption, print_json, print_table
from dataferry.cli.users_commands import _auth, _duration, _iso, actor
from dataferry.errors import UsageError

if TYPE_CHECKING:
    from dataferry.engine.context import RunContext
    from dataferry.sharing.tokens import ShareToken

share_app = typer.Typer(name="share", no_args_is_help=True,
                        help="Delta Sharing: give a partner a consumer's datasets.")


def register(app: typer.Typer) -> None:
    app.add_typer(share_app)


def _consumer(context: RunContext, ref: str) -> str:
    if ref not in context.index.consumers:
        known = ", ".join(sorted(context.index.consumers)) or "none"
        raise UsageError(f"no consumer {ref!r} in the model: give <team>.<consumer> "
                         f"(consumers: {known})")
    return ref


@share_app.command("create")
def share_create(
    consumer: str = typer.Argument(..., metavar="TEAM.CONSUMER",
                                   help="The consumer whose datasets the partner reads."),
    endpoint: str = typer.Option(..., "--endpoint", metavar="URL",
                                 help="The server as the partner reaches it, e.g. "
                                      "https://ferry.example.com."),
    out: Path | None = typer.Option(None, "--out", metavar="FILE",
                                    help="Write the profile here (mode 0600); default: "
                                         "print it."),
    expires: str = typer.Option("90d", "--expires", metavar="DURATION",
                                help="Lifetime, e.g. 30d, 12w (at most 366d)."),
    model: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """Issue a share token and its profile file; the token is shown only now."""
    from dataferry.sharing.profile import endpoint_of, profile, write_profile
    from dataferry.sharing.tokens import MAX_TTL, ShareTokens

    ttl = _duration(expires)
    if ttl > MAX_TTL:
        raise UsageError(f"--expires {expires}: a share token must expire within "
                         f"{MAX_TTL.days} days")
    url = endpoint_of(endpoint)
    with _auth(model) as (auth, context):
        issued = ShareTokens(auth.db, auth.now).create(_consumer(context, consumer), ttl,
                                                       actor=actor())
    content = profile(url, issued.secret, issued.record.expires_at)
    if out is not None:
        write_profile(out, content)
        typer.echo(f"share {consumer}: profile written to {out} (it holds the token; send "
                   f"it to the partner safely), expires {_iso(issued.record.expires_at)}",
                   err=True)
        if json_out:
            print_json(_share_json(issued.record))
        return
    print_json(content)
    typer.echo(f"share {consumer}: expires {_iso(issued.record.expires_at)}; the token is "
               "shown only now", err=True)


@share_app.command("list")
def share_list(
    all_tokens: bool = typer.Option(False, "--all", help="Include expired and revoked ones."),
    model: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """List share tokens (never the tokens themselves): consumer, expiry, last use."""
    from dataferry.sharing.tokens import ShareTokens

    with _auth(model) as (auth, _):
        found = ShareTokens(auth.db, auth.now).list(include_dead=all_tokens)
    if json_out:
        print_json([_share_json(t) for t in found])
        return
    print_table(["id", "consumer", "created by", "expires", "last used"], [
        [str(t.id), t.consumer, t.created_by,
         "revoked" if t.revoked_at else _iso(t.expires_at) or "",
         _iso(t.last_used_at) or "never"] for t in found])


@share_app.command("revoke")
def share_revoke(
    consumer: str = typer.Argument(..., metavar="TEAM.CONSUMER",
                                   help="Whose share tokens to revoke (all of them)."),
    model: ModelOption = None,
) -> None:
    """Revoke every live share token of a consumer; effective on the next request."""
    from dataferry.sharing.tokens import ShareTokens

    with _auth(model) as (auth, _):
        count = ShareTokens(auth.db, auth.now).revoke(consumer, actor=actor())
    if count == 0:
        raise UsageError(f"consumer {consumer!r} has no live share token (ferry share list)")
    typer.echo(f"revoked {count} share token{'s' if count != 1 else ''} of {consumer}")


def _share_json(token: ShareToken) -> dict[str, Any]:
    return {"id": token.id, "consumer": token.consumer, "created_by": token.created_by,
            "created_at": _iso(token.created_at), "expires_at": _iso(token.expires_at),
            "revoked_at": _iso(token.revoked_at), "last_used_at": _iso(token.last_used_at)}


