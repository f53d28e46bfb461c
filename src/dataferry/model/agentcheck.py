"""``ferry check`` on jobs placed on a gateway agent: ``agent-unsupported``.

A job whose platform is in a private network runs on an agent of that network
(docs/agents.md). Some cannot, by design, and are errors now rather than failed runs:

- a Python transformer on such a platform: the hub does not send code into a private
  network (an agent runs only SQL, under DuckDB's lock-down, which it can bound);
- a transformer on such a platform that gets an input column masked: masks are keyed
  hashes whose key stays on the hub, and the values they hide must not reach the network
  unmasked. (A need with ``mask:`` to a sink in a network is delivered: the hub derives
  its masked rows and the agent only applies them, ``agent.derived``.)

The planner places a transformer in a network only by name (``platform:``,
``defaults.platform`` or a zone's fallback), never by size.
"""

from __future__ import annotations

from dataferry.model.findings import Report
from dataferry.model.graph import ModelIndex
from dataferry.model.policy import masked_input_columns
from dataferry.model.spec import Transformer

CODE = "agent-unsupported"


def check_agents(index: ModelIndex, report: Report) -> None:
    """Add an ``agent-unsupported`` finding for each job a gateway agent cannot run."""
    networks = {p.network for p in index.ecosystem.platforms.values() if p.network}
    for network in sorted(networks):
        for ref in transformers_in(index, network):
            refused = agent_refusal(index, ref, network)
            if refused is not None:
                report.add(CODE, refused, (*index.datasets[ref].path, "platform"))


def agent_refusal(index: ModelIndex, ref: str, network: str) -> str | None:
    """Why transformer ``ref`` cannot run on a gateway agent of ``network`` (None: it
    can): the one rule behind this check, the hub's refusal at run time and what an agent
    may clone."""
    spec = index.datasets[ref].spec
    assert isinstance(spec, Transformer)
    if spec.python is not None:
        return (f"transformer {ref} is Python ({spec.python}) and is placed on a platform in "
                f"network {network}: Python transformers run on the hub, never on a gateway "
                "agent (it runs only SQL, under DuckDB's lock-down); set platform: to a "
                "platform outside a network")
    for input_ref in spec.inputs:
        if input_ref in index.datasets and masked_input_columns(index, ref, input_ref):
            return (f"transformer {ref} runs in network {network} and gets columns of "
                    f"{input_ref} masked: masks are keyed with the hub's key, so it cannot run "
                    "on a gateway agent; set platform: to a platform outside a network")
    return None


def transformers_in(index: ModelIndex, network: str) -> list[str]:
    """The transformers the planner places on a platform in ``network``: by ``platform:``
    or ``defaults.platform``, where the team's zone allows it (otherwise the planner falls
    back to a platform outside any network; ``broker.platforms``)."""
    eco = index.ecosystem
    found = []
    for ref, entry in sorted(index.datasets.items()):
        if not isinstance(entry.spec, Transformer):
            continue
        name = entry.spec.platform or eco.defaults.platform
        platform = eco.platforms.get(name)
        team = eco.teams.get(entry.team)
        zone = eco.zones.get(team.zone) if team is not None else None
        allowed = zone.platforms if zone is not None else None
        if platform is not None and platform.network == network and (
                allowed is None or name in allowed):
            found.append(ref)
    return found
