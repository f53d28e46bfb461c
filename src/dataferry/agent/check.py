"""``ferry check --connect`` for sources and sinks in private networks: asked of their agents.

The hub cannot reach such a source, so for each one it queues a ``check`` job for the
agents of its network (the same queue as any job, ``dispatch.wait_for_agent``); the agent
reads the live columns where it runs and the hub compares them with the model, with the
same findings as a source it reaches itself. A sink in a network is checked the same way:
the agent opens it and reads its ``_ferry_loads`` ledger for each need, as the hub does
for a sink it reaches (``unreachable`` when it cannot). No agent enrolled in the network (or no
metadata database yet): the source is reported as not checked. An agent that does not
answer within ``CHECK_WAIT`` seconds: ``unreachable`` (a warning, as for any source
``--connect`` cannot reach), and the other sources of that network are not asked.
"""

from __future__ import annotations

from pathlib import Path

from dataferry.agent.dispatch import wait_for_agent
from dataferry.agent.registry import Agents
from dataferry.agent.wire import columns_from_json, ingest_payload
from dataferry.connectors.base import ReadRequest
from dataferry.engine.context import RunContext
from dataferry.errors import FerryError
from dataferry.model.connect import add_comparison, is_schema_error
from dataferry.model.graph import ModelIndex
from dataferry.model.load import LoadedModel

CHECK_WAIT = 30.0


def check_through_agents(loaded: LoadedModel, index: ModelIndex, refs: list[str],
                         wait: float = CHECK_WAIT) -> None:
    """Add the findings of the source datasets ``refs`` (each in a network) to the report."""
    context = RunContext.from_loaded(loaded)
    report = loaded.report
    try:
        served = _networks_with_agents(context)
        silent: set[str] = set()
        for ref in refs:
            entry = index.datasets[ref]
            assert entry.source is not None and entry.source_name is not None
            network = str(entry.source.network)
            where = (*entry.path,)
            if network not in served or network in silent:
                why = ("no agent of it answered" if network in silent else
                       f"no agent is enrolled (ferry agents enroll {network})")
                report.add("unreachable", f"{ref}: not checked: its source is only reachable "
                           f"in network {network}, and {why}", where, severity="warning")
                continue
            request = ReadRequest(dataset=ref, spec=entry.dataset,
                                  columns=list(entry.dataset.columns))
            payload = ingest_payload(ref, f"{entry.team}.{entry.source_name}", entry.source,
                                     request)
            try:
                outcome = wait_for_agent(context, f"check:{ref}", network, "check", payload,
                                         run_id=None, wait=wait)
            except FerryError as error:
                if is_schema_error(error):
                    report.add("schema-mismatch", f"{ref}: {error}", where)
                    continue
                if "waiting for an agent" in str(error):
                    silent.add(network)
                report.add("unreachable", f"{ref}: the agent of {network} cannot reach its "
                           f"source: {error}", where, severity="warning")
                continue
            add_comparison(report, ref, entry.dataset, where,
                           columns_from_json(str(outcome.result["columns"])))
    finally:
        context.close()


def _networks_with_agents(context: RunContext) -> set[str]:
    """Networks with an enrolled agent; none when the metadata DB does not exist yet (a
    check in CI must not create one)."""
    url = context.metadata_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return set()
    return Agents(context.metadata).networks()


def check_sinks_through_agents(loaded: LoadedModel, index: ModelIndex, consumers: list[str],
                               wait: float = CHECK_WAIT) -> None:
    """Add an ``unreachable`` warning for each consumer of ``consumers`` (each with its sink
    in a network) whose network's agent cannot open its sink, or that no agent checked."""
    context = RunContext.from_loaded(loaded)
    report = loaded.report
    try:
        served = _networks_with_agents(context)
        silent: set[str] = set()
        for consumer_ref in consumers:
            team, name, consumer = index.consumers[consumer_ref]
            network = str(consumer.sink.network)
            where = ("teams", team, "consumers", name, "sink")
            if network not in served or network in silent:
                why = ("no agent of it answered" if network in silent else
                       f"no agent is enrolled (ferry agents enroll {network})")
                report.add("unreachable", f"consumer {consumer_ref}: not checked: its sink is "
                           f"only reachable in network {network}, and {why}", where,
                           severity="warning")
                continue
            payload = {"consumer": consumer_ref,
                       "sink": consumer.sink.model_dump(mode="json", exclude_none=True,
                                                        by_alias=True),
                       "tables": [[need.ref, need.table or need.ref.partition(".")[2]]
                                  for need in consumer.datasets]}
            try:
                wait_for_agent(context, f"check:{consumer_ref}", network, "check", payload,
                               run_id=None, wait=wait)
            except FerryError as error:
                if "waiting for an agent" in str(error):
                    silent.add(network)
                report.add("unreachable", f"consumer {consumer_ref}: the agent of {network} "
                           f"cannot reach its sink: {error}", where, severity="warning")
    finally:
        context.close()
