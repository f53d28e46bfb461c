"""Which events each consumer's ``notify`` targets hear.

A consumer hears about the data it receives:

- ``version.published`` of each dataset it receives;
- ``run.succeeded`` / ``run.failed`` of its own deliveries and of the jobs that produce
  what it receives (the ingest or transform of each of those datasets);
- ``dataset.stale`` of its own deliveries.

An ``openlineage:`` endpoint of ``ferry.yaml`` hears every run event (as OpenLineage).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dataferry.metadata import Event
from dataferry.metadata.outbox import DATASET_STALE, RUN_FAILED, RUN_SUCCEEDED, VERSION_PUBLISHED
from dataferry.model.graph import ModelIndex
from dataferry.model.spec import NatsNotify, OpenLineage, WebhookNotify

ECOSYSTEM = "(ecosystem)"
"""The ``consumer`` of the ecosystem's own targets (``openlineage:``)."""


@dataclass(frozen=True)
class NotifyTarget:
    """One ``notify`` entry of one consumer; ``key`` names it in ``notify_progress``."""

    key: str
    consumer: str
    target: WebhookNotify | NatsNotify | OpenLineage
    refs: frozenset[str]

    @property
    def kind(self) -> str:
        if isinstance(self.target, OpenLineage):
            return "openlineage"
        return "webhook" if isinstance(self.target, WebhookNotify) else "nats"

    @property
    def address(self) -> str:
        """Where events go: the webhook URL, or ``<server> <subject>`` for NATS."""
        if isinstance(self.target, WebhookNotify):
            return self.target.webhook
        if isinstance(self.target, OpenLineage):
            return f"{self.target.url.rstrip('/')}/{self.target.endpoint.lstrip('/')}"
        return f"{self.target.server} {self.target.nats}"

    def wants(self, event: Event) -> bool:
        if isinstance(self.target, OpenLineage):
            return event.type in (RUN_SUCCEEDED, RUN_FAILED)
        if event.type == VERSION_PUBLISHED:
            return event.data.get("ref") in self.refs
        if event.type == DATASET_STALE:
            return event.data.get("consumer") == self.consumer
        job = event.subject or ""
        kind, _, rest = job.partition(":")
        if kind == "deliver":
            return rest.startswith(self.consumer + ":")
        return kind in ("ingest", "transform") and rest in self.refs


def notify_targets(index: ModelIndex) -> list[NotifyTarget]:
    """Every notify target of the model's consumers."""
    out = []
    for ref, (_, _, consumer) in sorted(index.consumers.items()):
        refs = frozenset(need.ref for need in consumer.datasets)
        for target in consumer.notify:
            kind = "webhook" if isinstance(target, WebhookNotify) else "nats"
            where = target.webhook if isinstance(target, WebhookNotify) else \
                f"{target.server}/{target.nats}"
            out.append(NotifyTarget(f"{ref} {kind} {where}"[:450], ref, target, refs))
    lineage = index.ecosystem.openlineage
    if lineage is not None:
        everything = NotifyTarget("", ECOSYSTEM, lineage, frozenset(index.datasets))
        out.append(replace(everything,
                           key=f"{ECOSYSTEM} openlineage {everything.address}"[:450]))
    return out
