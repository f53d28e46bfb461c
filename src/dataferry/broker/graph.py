"""The job graph: one ingest per needed producer dataset, one job per transformer, one
delivery per consumer need — P + T + C jobs, however many consumers share a dataset.

A consumer whose sink is ``kind: share`` gets no delivery job: Delta Sharing serves it
from the store, so its needs only make their producers run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dataferry.broker.platforms import choose, dataset_rows
from dataferry.errors import UsageError
from dataferry.model.graph import ModelIndex
from dataferry.model.spec import STREAM_SOURCE_KINDS, Consumer


@dataclass(frozen=True)
class Job:
    id: str
    kind: str  # ingest | transform | deliver
    dataset: str
    consumer: str | None = None
    need: int | None = None
    inputs: tuple[str, ...] = ()
    platform: str = "local"
    network: str | None = None
    why: str = ""
    trigger: str = "manual"


@dataclass
class Graph:
    jobs: dict[str, Job] = field(default_factory=dict)

    def add(self, job: Job) -> None:
        self.jobs.setdefault(job.id, job)

    def producer(self, ref: str) -> str | None:
        for kind in ("ingest", "transform"):
            if f"{kind}:{ref}" in self.jobs:
                return f"{kind}:{ref}"
        return None

    def order(self, ids: Iterable[str]) -> list[Job]:
        """The jobs ``ids`` and everything they need, dependencies first."""
        out: list[Job] = []
        seen: set[str] = set()

        def visit(job_id: str) -> None:
            if job_id in seen:
                return
            seen.add(job_id)
            job = self.jobs[job_id]
            for dependency in job.inputs:
                visit(dependency)
            out.append(job)

        for job_id in ids:
            visit(job_id)
        return out

    def downstream(self, ids: Iterable[str]) -> set[str]:
        found = set(ids)
        changed = True
        while changed:
            changed = False
            for job in self.jobs.values():
                if job.id not in found and any(i in found for i in job.inputs):
                    found.add(job.id)
                    changed = True
        return found


def shared(consumer: Consumer) -> bool:
    """Whether the consumer is served only by Delta Sharing (no delivery job)."""
    return consumer.sink.kind == "share"


def build_graph(index: ModelIndex, *, everything: bool = False,
                sizes: Mapping[str, int] | None = None) -> Graph:
    """The graph of the model (``everything``: also ingests nobody needs). ``sizes``: rows
    of each dataset's latest version, for the platforms' ``min_rows`` rule."""
    graph = Graph()
    needed = set(index.receivers)
    rows = sizes or {}

    def producer(ref: str) -> str:
        entry = index.datasets[ref]
        return f"{'transform' if entry.is_transformer else 'ingest'}:{ref}"

    for ref, entry in index.datasets.items():
        if entry.is_transformer:
            continue
        spec = entry.dataset
        # a stream is drained whoever needs it: its broker keeps messages only so long
        stream = entry.source is not None and entry.source.kind in STREAM_SOURCE_KINDS
        if not (everything or ref in needed or spec.schedule or stream):
            continue
        network = getattr(entry.source, "network", None)
        choice = choose(index, entry.team, explicit=spec.platform, network=network,
                        rows=dataset_rows(rows, [ref]))
        graph.add(Job(f"ingest:{ref}", "ingest", ref, platform=choice.platform,
                      network=network, why=choice.why,
                      trigger=spec.schedule or ("stream" if stream else "freshness")))
    for ref, entry in index.datasets.items():
        if not entry.is_transformer:
            continue
        sources = [r for r in entry.spec.inputs if r in index.datasets]  # type: ignore[attr-defined]
        choice = choose(index, entry.team, explicit=entry.spec.platform, network=None,
                        rows=dataset_rows(rows, sources),
                        spark=entry.spec.python is None)  # type: ignore[attr-defined]
        graph.add(Job(f"transform:{ref}", "transform", ref,
                      inputs=tuple(producer(r) for r in sources), platform=choice.platform,
                      why=choice.why, trigger=entry.spec.trigger))  # type: ignore[attr-defined]
    for consumer_ref, (team, _, consumer) in index.consumers.items():
        if shared(consumer):
            continue
        for position, need in enumerate(consumer.datasets):
            if need.ref not in index.datasets:
                continue
            table = need.table or need.ref.partition(".")[2]
            choice = choose(index, team, explicit=consumer.platform,
                            network=consumer.sink.network, rows=dataset_rows(rows, [need.ref]))
            graph.add(Job(f"deliver:{consumer_ref}:{table}", "deliver", need.ref,
                          consumer=consumer_ref, need=position, inputs=(producer(need.ref),),
                          platform=choice.platform, network=consumer.sink.network,
                          why=choice.why, trigger="on_change"))
    return graph


def select(graph: Graph, index: ModelIndex, refs: list[str], *, downstream: bool) -> list[Job]:
    """The jobs ``ferry run REF...`` runs, dependencies first (no REF: all of them)."""
    if not refs:
        return graph.order(sorted(graph.jobs))
    wanted: list[str] = []
    for ref in refs:
        if ref in index.consumers and shared(index.consumers[ref][2]):
            # served by Delta Sharing: running it brings the data it reads up to date
            wanted += [p for need in index.consumers[ref][2].datasets
                       if (p := graph.producer(need.ref)) is not None]
        elif ref in index.consumers:
            wanted += [j.id for j in graph.jobs.values() if j.consumer == ref]
        elif ref in index.datasets:
            entry = index.datasets[ref]
            job_id = f"{'transform' if entry.is_transformer else 'ingest'}:{ref}"
            if job_id not in graph.jobs:  # an ingest nobody needs still runs when asked for
                graph.add(Job(job_id, "ingest", ref, trigger="manual"))
            wanted.append(job_id)
        else:
            from dataferry.model.findings import suggest_ref

            hint = suggest_ref(ref, [*index.datasets, *index.consumers],
                               "datasets and consumers")
            raise UsageError(f"{ref!r} is neither a dataset nor a consumer of the model{hint}")
    if downstream:
        wanted = sorted(graph.downstream(wanted))
    return graph.order(wanted)
