"""``ferry agents`` (on the hub: enroll, list, revoke) and ``ferry agent`` (in the network).

See docs/agents.md. Enrolling and revoking are audited as ``cli:<os user>``; the
enrollment token is printed once and only its hash is kept.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from dataferry.cli.common import JsonOption, ModelOption, print_json, print_table
from dataferry.cli.users_commands import _auth, _iso, actor
from dataferry.errors import UsageError

agents_app = typer.Typer(name="agents", no_args_is_help=True,
                         help="Gateway agents of private networks: enroll, list, revoke.")
NETWORK = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def register(app: typer.Typer) -> None:
    app.add_typer(agents_app)
    app.command("agent")(agent)


@agents_app.command("enroll")
def agents_enroll(
    network: str = typer.Argument(..., metavar="NETWORK",
                                  help="The private network the agent runs in (a platform's "
                                       "network: in ferry.yaml)."),
    model: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """Print a one-time enrollment token for an agent of NETWORK (valid 24 h)."""
    from dataferry.agent.registry import Agents

    if not NETWORK.match(network):
        raise UsageError(f"network {network!r}: use lower case letters, digits, _ and -")
    with _auth(model) as (auth, context):
        if network not in context.index.networks:
            known = ", ".join(sorted(context.index.networks)) or "none"
            typer.echo(f"warning: no platform of the model runs in network {network} "
                       f"(networks: {known}); the agent will get no job until one does",
                       err=True)
        made = Agents(auth.db, auth.now).enroll(network, actor=actor())
    if json_out:
        print_json({"token": made.token, "network": made.network,
                    "expires_at": _iso(made.expires_at)})
        return
    typer.echo(made.token)
    typer.echo(f"enrollment token for network {network}: one use, expires "
               f"{_iso(made.expires_at)}; inside the network run: ferry agent --hub URL "
               "--token TOKEN", err=True)


@agents_app.command("list")
def agents_list(
    all_agents: bool = typer.Option(False, "--all", help="Include revoked agents."),
    model: ModelOption = None,
    json_out: JsonOption = False,
) -> None:
    """List agents: id, network, last contact, version, the job it runs now."""
    from dataferry.agent.queue import AgentJobs
    from dataferry.agent.registry import Agents

    with _auth(model) as (auth, _):
        queue = AgentJobs(auth.db, auth.now)
        found = [(a, queue.running_for(a.id))
                 for a in Agents(auth.db, auth.now).list(include_revoked=all_agents)]
    if json_out:
        print_json([_agent_json(a, job.job_id if job else None) for a, job in found])
        return
    print_table(["id", "network", "host", "last seen", "version", "running job"], [
        [str(a.id), a.network, a.hostname,
         "revoked" if a.revoked_at else _iso(a.last_seen_at) or "never", a.version,
         job.job_id if job else "-"] for a, job in found])


@agents_app.command("revoke")
def agents_revoke(
    agent_id: int = typer.Argument(..., metavar="ID", help="The agent (ferry agents list)."),
    model: ModelOption = None,
) -> None:
    """Revoke an agent: refused at its next contact; its running job goes to another."""
    from dataferry.agent.registry import Agents

    with _auth(model) as (auth, _):
        done = Agents(auth.db, auth.now).revoke(agent_id, actor=actor())
    if not done:
        raise UsageError(f"no live agent {agent_id} (ferry agents list)")
    typer.echo(f"revoked agent {agent_id}")


def agent(
    hub: str = typer.Option(..., "--hub", metavar="URL",
                            help="The hub (ferry serve) as this network reaches it, e.g. "
                                 "https://ferry.example.com."),
    token: str | None = typer.Option(None, "--token", metavar="TOKEN", envvar="FERRY_AGENT_TOKEN",
                                     help="The enrollment token (ferry agents enroll), needed "
                                          "on the first start only."),
    home: Path = typer.Option(Path(".ferry-agent"), "--home", metavar="DIR",
                              help="Where the agent keeps its key and credential."),
) -> None:
    """Run a gateway agent inside a private network: it dials out to the hub, never listens."""
    import logging

    from dataferry.agent.runtime import run_agent

    if not re.match(r"^https?://", hub):
        raise UsageError(f"--hub {hub!r}: give the hub's URL, e.g. https://ferry.example.com")
    host = re.sub(r"^https?://([^/:]+).*$", r"\1", hub)
    if hub.startswith("http://") and host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: --hub {hub} is plain HTTP: the agent's credential and the data "
                   "it uploads cross the network unencrypted; put TLS in front of the hub "
                   "and use https://", err=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for chatty in ("httpx", "httpcore"):  # a line per request: every poll, every renewal
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        run_agent(hub, token, home.resolve(),
                  say=lambda message: typer.echo(message, err=True))
    except KeyboardInterrupt:
        typer.echo("agent stopped", err=True)


def _agent_json(agent: Any, running: str | None) -> dict[str, Any]:
    return {"id": agent.id, "network": agent.network, "hostname": agent.hostname,
            "version": agent.version, "enrolled_at": _iso(agent.enrolled_at),
            "last_seen": _iso(agent.last_seen_at), "revoked_at": _iso(agent.revoked_at),
            "running_job": running}
