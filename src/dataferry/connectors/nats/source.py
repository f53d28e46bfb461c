"""The NATS source (``kind: nats``): each dataset is a JetStream subject read through a
durable pull consumer, one version per run.

Model keys: the source's ``url`` (``nats://host:port``), ``username``/``password`` or
``token`` (secret references), ``stream`` (default: the stream whose subjects take the
dataset's subject), ``durable`` (prefix of the consumers, default ``ferry``) and
``subject`` (the default of its datasets); the dataset's ``subject``, ``fields``, ``batch``.

A run (``read_changes``) reads the messages after the head's position (``consumer``)
until none are pending, ``batch.rows`` are in or ``batch.seconds`` passed, and turns them
into one change set (``stream.collect``) whose position is ``{"stream": .., "stream_seq":
..}``, the last stream sequence read; the messages are acknowledged only after the version
is signed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dataferry.connectors.base import (
    LineageName,
    ReadRequest,
    ReadResult,
    SourceColumn,
    SourceConnector,
)
from dataferry.connectors.changes import ChangeSet
from dataferry.connectors.nats.consumer import ConsumerOptions, Durable, Fetched
from dataferry.connectors.stream.collect import ChangeCollector, Message
from dataferry.connectors.stream.options import batch_of, declared_columns
from dataferry.errors import SourceError
from dataferry.model.spec import AnySource, SourceDataset
from dataferry.model.spec import NatsSource as NatsSpec
from dataferry.secrets import resolve

__all__ = ["NatsSource"]

T = TypeVar("T")


class NatsSource(SourceConnector):
    """Reads JSON messages of JetStream subjects (module docstring)."""

    kind = "nats"
    spec: NatsSpec
    quiet_seconds = 1.0
    """A fetch that brings nothing for this long ends the run."""

    @classmethod
    def lineage_inputs(cls, spec: AnySource, dataset: str, dataset_spec: SourceDataset,
                       model_root: Path) -> list[LineageName]:
        assert isinstance(spec, NatsSpec)
        url = urlsplit(spec.url)
        subject = dataset_spec.subject or spec.subject
        if not url.hostname or subject is None:
            return []
        port = f":{url.port}" if url.port else ""
        return [LineageName(f"nats://{url.hostname}{port}", subject)]

    def __init__(self, name: str, spec: AnySource, model_root: Path) -> None:
        super().__init__(name, spec, model_root)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(work)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def subject(self, dataset: str, spec: SourceDataset) -> str:
        subject = spec.subject or self.spec.subject
        if subject is None:
            raise SourceError(f"{dataset}: no subject: give the dataset (or its source "
                              f"{self.name}) subject:", public=True)
        return subject

    def durable(self, dataset: str, spec: SourceDataset) -> Durable:
        options = ConsumerOptions(
            url=self.spec.url, subject=self.subject(dataset, spec),
            durable=f"{self.spec.durable}_{dataset.replace('.', '_')}",
            stream=self.spec.stream, username=self.spec.username,
            password=resolve(self.spec.password, f"{self.name}: password"),
            token=resolve(self.spec.token, f"{self.name}: token"))
        return Durable(options, f"{dataset} (source {self.name})")

    def columns(self, dataset: str, spec: SourceDataset) -> list[SourceColumn]:
        """Connects and finds the stream of the subject; the declared columns."""
        durable = self.durable(dataset, spec)
        try:
            self._run(durable.open())
        finally:
            self._run(durable.close())
        return declared_columns(spec)

    def read(self, request: ReadRequest) -> ReadResult:
        raise SourceError(f"{request.dataset}: a nats source is read as changes "
                          "(read_changes), one version per run", public=True)

    def read_changes(self, request: ReadRequest) -> ChangeSet:
        """The messages after the head's position, as one change set."""
        spec, dataset = request.spec, request.dataset
        batch = batch_of(spec)
        durable = self.durable(dataset, spec)
        warnings: list[str] = []
        try:
            js = self._run(durable.open())
            state = request.state or {}
            position: int | None = state.get("stream_seq")
            if position is not None and state.get("stream") not in (None, durable.stream):
                warnings.append(f"{dataset}: the last version read stream {state['stream']!r}, "
                                f"now {durable.stream!r}: reading it where the dataset's "
                                "consumer on it stands (a new one: from its start)")
                position = None
            subscription = self._run(durable.prepare(js, position))
            fetched = self._run(durable.fetch(subscription, rows=batch.rows,
                                              seconds=batch.seconds, quiet=self.quiet_seconds))
        except BaseException:
            self._run(durable.close())  # nothing acknowledged: read again next run
            raise
        collector = ChangeCollector(dataset, spec, request.columns, ".")
        fresh = [f for f in fetched if position is None or f.sequence > position]
        for item in fresh:
            collector.add(Message(item.payload, item.subject,
                                  {"subject": item.subject, "stream_seq": item.sequence}))
        last = max([f.sequence for f in fetched] + [position or 0])
        if len(fresh) < len(fetched):
            warnings.append(f"{dataset}: {len(fetched) - len(fresh)} messages up to stream "
                            f"sequence {position} are in the store already (their "
                            "acknowledgement was lost); skipped")

        def acknowledge(taken: list[Fetched] = fetched) -> None:
            self._run(durable.acknowledge(taken))

        def close() -> None:
            self._run(durable.close())

        changes = collector.change_set({"stream": durable.stream, "stream_seq": last},
                                       acknowledge, close)
        changes.warnings[:0] = warnings
        return changes
