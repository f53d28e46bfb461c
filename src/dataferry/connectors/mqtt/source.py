"""The MQTT source (``kind: mqtt``): each dataset is a topic filter read through its own
persistent session, one version per run.

Model keys: the source's ``url`` (``mqtt://host:port``, ``mqtts://host:port`` for TLS,
checked against ``ca_file`` or the system's CAs), ``username``/``password`` (a secret
reference), ``client_id`` (prefix of the sessions, default ``ferry``) and ``topic`` (the
default of its datasets); the dataset's ``topic``, ``fields`` and ``batch``.

A run (``read_changes``) connects as ``<client_id>-<team>.<dataset>``, subscribes with QoS
1, and takes the messages the session kept since the last run, and what arrives while it
reads, until ``batch.rows`` are in, ``batch.seconds`` passed, or no message came for
``quiet_seconds``. They become one change set (``stream.collect``); the messages are
acknowledged only after the version is signed. Messages carry no position, so the
position recorded is the session and the count; a re-read after a crash is made
harmless by the key: the same rows merge to the same version.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from dataferry.connectors.base import (
    LineageName,
    ReadRequest,
    ReadResult,
    SourceColumn,
    SourceConnector,
)
from dataferry.connectors.changes import ChangeSet
from dataferry.connectors.mqtt.session import Received, Session, SessionOptions
from dataferry.connectors.stream.collect import ChangeCollector, Message
from dataferry.connectors.stream.options import batch_of, declared_columns
from dataferry.errors import SourceError
from dataferry.model.spec import AnySource, SourceDataset
from dataferry.model.spec import MqttSource as MqttSpec
from dataferry.secrets import resolve

__all__ = ["MqttSource"]


class MqttSource(SourceConnector):
    """Reads JSON messages of MQTT topics (module docstring)."""

    kind = "mqtt"
    spec: MqttSpec
    quiet_seconds = 1.0
    """A run ends when no message came for this long (what was waiting has arrived)."""

    @classmethod
    def lineage_inputs(cls, spec: AnySource, dataset: str, dataset_spec: SourceDataset,
                       model_root: Path) -> list[LineageName]:
        assert isinstance(spec, MqttSpec)
        url = urlsplit(spec.url)
        topic = dataset_spec.topic or spec.topic
        if not url.hostname or topic is None:
            return []
        port = f":{url.port}" if url.port else ""
        return [LineageName(f"{url.scheme}://{url.hostname}{port}", topic)]

    def topic(self, dataset: str, spec: SourceDataset) -> str:
        topic = spec.topic or self.spec.topic
        if topic is None:
            raise SourceError(f"{dataset}: no topic: give the dataset (or its source "
                              f"{self.name}) topic:", public=True)
        return topic

    def session(self, dataset: str, spec: SourceDataset, receive: int | None = None) -> Session:
        """The dataset's persistent session, connected (secrets resolved here); ``receive``
        caps the messages in flight (default: the batch's rows)."""
        ca_file = None
        if self.spec.ca_file is not None:
            ca_file = Path(self.spec.ca_file)
            ca_file = ca_file if ca_file.is_absolute() else self.model_root / ca_file
        options = SessionOptions(
            url=self.spec.url, client_id=f"{self.spec.client_id}-{dataset}",
            username=self.spec.username,
            password=resolve(self.spec.password, f"{self.name}: password"),
            ca_file=ca_file, receive_maximum=receive or batch_of(spec).rows)
        return Session(options, f"{dataset} (source {self.name})")

    def columns(self, dataset: str, spec: SourceDataset) -> list[SourceColumn]:
        """Connects and subscribes (creating the session, which from then on keeps what
        arrives), acknowledges nothing; the declared columns (payloads have no schema)."""
        session = self.session(dataset, spec, receive=1)  # not the queue: a run reads it
        try:
            session.subscribe(self.topic(dataset, spec))
        finally:
            session.close()
        return declared_columns(spec)

    def read(self, request: ReadRequest) -> ReadResult:
        raise SourceError(f"{request.dataset}: an mqtt source is read as changes "
                          "(read_changes), one version per run", public=True)

    def read_changes(self, request: ReadRequest) -> ChangeSet:
        """What the session kept and what arrives during the run, as one change set."""
        spec, dataset = request.spec, request.dataset
        topic = self.topic(dataset, spec)
        batch = batch_of(spec)
        session = self.session(dataset, spec)
        try:
            session.subscribe(topic)
            received = session.receive(rows=min(batch.rows, session.options.receive_maximum),
                                       seconds=batch.seconds, quiet=self.quiet_seconds)
            collector = ChangeCollector(dataset, spec, request.columns, "/")
            for message in received:
                collector.add(Message(message.payload, message.topic,
                                      {"topic": message.topic, "mid": message.mid}))
        except BaseException:
            session.close()  # nothing acknowledged: the broker sends them again
            raise

        def acknowledge(taken: list[Received] = received) -> None:
            session.acknowledge(taken)

        position = {"session": session.options.client_id, "messages": len(received),
                    "redelivered": sum(1 for m in received if m.redelivered)}
        return collector.change_set(position, acknowledge, session.close)
