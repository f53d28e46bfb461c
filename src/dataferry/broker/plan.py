"""The plan: the job graph as a document, and what changed since the applied one.

``ferry plan`` shows it; ``ferry apply`` records it in the metadata database as the plan
the scheduler follows. The document is CLI.md's ``plan`` shape: ``jobs`` (``id``,
``kind``, ``dataset``, ``consumer``, ``platform``, ``inputs``, ``trigger``, plus ``why``
the platform was chosen and ``network``) and ``changes`` (``add``/``change``/``remove``
job ids against the applied plan), and ``shared``: the consumers whose sink is
``kind: share`` (``consumer``, ``datasets``), served by Delta Sharing with no job. Removing a job never touches data: a consumer that
leaves the model keeps what was delivered into its sink.

``plan_against_applied`` adds what the store says of each transform: ``definition``
(``current``, ``changed``, ``not recorded``, or null before its first version) and
``rebuild``, why its next run recomputes it although its inputs may not have changed
("SQL changed"; ``engine.definition``); of each ingest, ``rebuild`` says how its latest
version's schema differs from the declared one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence, Set
from typing import Any

from dataferry.broker.graph import Graph, build_graph, shared
from dataferry.engine.context import RunContext
from dataferry.engine.definition import (
    rebuild_reason,
    schema_changes,
    transformer_definition,
)
from dataferry.metadata import AppliedPlan, PlanHistory
from dataferry.model.graph import ModelIndex
from dataferry.model.spec import Transformer
from dataferry.store.hashing import hash_bytes
from dataferry.store.store import Store

PLANNED_FIELDS = ("kind", "dataset", "consumer", "platform", "inputs", "trigger", "network")
"""What makes two plans of one job differ (``why`` is an explanation, not a setting)."""


def plan_jobs(graph: Graph) -> list[dict[str, Any]]:
    """Every job of the graph, dependencies first."""
    return [
        {"id": job.id, "kind": job.kind, "dataset": job.dataset, "consumer": job.consumer,
         "platform": job.platform, "inputs": list(job.inputs), "trigger": job.trigger,
         "network": job.network, "why": job.why}
        for job in graph.order(sorted(graph.jobs))
    ]


def plan_changes(jobs: Sequence[Mapping[str, Any]],
                 applied: Sequence[Mapping[str, Any]] | None) -> dict[str, list[str]]:
    """Job ids added, changed and removed since the applied plan (all added if none)."""
    before = {job["id"]: job for job in applied or ()}
    now = {job["id"]: job for job in jobs}
    return {
        "add": sorted(set(now) - set(before)),
        "change": sorted(i for i in set(now) & set(before)
                         if any(now[i].get(f) != before[i].get(f) for f in PLANNED_FIELDS)),
        "remove": sorted(set(before) - set(now)),
    }


def plan_hash(jobs: Sequence[Mapping[str, Any]]) -> str:
    """A hash of the planned jobs (what the applied plan is recorded under)."""
    planned = [{k: job.get(k) for k in ("id", *PLANNED_FIELDS)} for job in jobs]
    return hash_bytes("blake3", json.dumps(planned, sort_keys=True).encode())


def dataset_sizes(store: Store, index: ModelIndex,
                  stored: Set[str] | None = None) -> dict[str, int]:
    """Rows of the latest version of every dataset the store has (for ``min_rows``);
    ``stored``: the refs the store has (``Store.refs()``), when known."""
    sizes: dict[str, int] = {}
    stored = set(store.refs()) if stored is None else stored
    for ref in index.datasets:
        if ref not in stored:
            continue
        dataset = store.dataset(ref)
        if not dataset.exists():
            continue
        head = dataset.head()
        if head is not None:
            sizes[ref] = head.manifest.rows
    return sizes


def build_plan(index: ModelIndex, store: Store,
               applied: Sequence[Mapping[str, Any]] | None,
               stored: Set[str] | None = None) -> dict[str, Any]:
    """The plan document of the model, with its changes against ``applied`` (``stored``:
    the refs the store has, when known)."""
    jobs = plan_jobs(build_graph(index, sizes=dataset_sizes(store, index, stored)))
    return {"jobs": jobs, "changes": plan_changes(jobs, applied),
            "shared": shared_consumers(index)}


def shared_consumers(index: ModelIndex) -> list[dict[str, Any]]:
    """The consumers served by Delta Sharing only (no delivery job) and what they read."""
    return [{"consumer": ref, "datasets": [need.ref for need in consumer.datasets]}
            for ref, (_, _, consumer) in sorted(index.consumers.items()) if shared(consumer)]


def plan_against_applied(context: RunContext) -> tuple[dict[str, Any], AppliedPlan | None]:
    """The model's plan document with its changes since the applied plan, and that plan
    (what ``ferry plan``, the API and the web UI show)."""
    applied = PlanHistory(context.metadata).applied_plan()
    # One listing of the store instead of a look (or, in a bucket, a request) per
    # dataset: most of a large model's datasets may have no version yet.
    stored = set(context.store.refs())
    document = build_plan(context.index, context.store,
                          applied.plan["jobs"] if applied is not None else None, stored)
    for job in document["jobs"]:
        state, reason = None, None  # also when the store has no version to compare
        if job["dataset"] not in stored:
            pass
        elif job["kind"] == "transform":
            state, reason = definition_state(context, job["dataset"])
        elif job["kind"] == "ingest":
            reason = schema_state(context, job["dataset"])
        job["definition"], job["rebuild"] = state, reason
    return document, applied


def schema_state(context: RunContext, ref: str) -> str | None:
    """How the latest version of source dataset ``ref`` differs from its declared
    columns and key ("columns changed: added region"), or None."""
    dataset = context.store.dataset(ref)
    head = dataset.head() if dataset.exists() else None
    if head is None:
        return None
    return "; ".join(schema_changes(head.manifest.schema, context.index.datasets[ref].spec)) \
        or None


def definition_state(context: RunContext, ref: str) -> tuple[str | None, str | None]:
    """(whether transformer ``ref``'s latest version was computed by its definition now:
    ``current``, ``changed``, ``not recorded`` or None before its first version; why it
    must be rebuilt, or None)."""
    dataset = context.store.dataset(ref)
    head = dataset.head() if dataset.exists() else None
    if head is None:
        return None, None
    spec = context.index.datasets[ref].spec
    assert isinstance(spec, Transformer)
    reason = rebuild_reason(head.manifest, transformer_definition(context.index, context.root,
                                                                  ref), spec)
    if reason is not None:
        return "changed", reason
    return ("current" if head.manifest.definition is not None else "not recorded"), None
