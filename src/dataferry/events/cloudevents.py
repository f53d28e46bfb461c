"""An outbox event as a CloudEvent 1.0 (the ``cloudevents`` package), structured JSON."""

from __future__ import annotations

from cloudevents.v1.conversion import to_json
from cloudevents.v1.http import CloudEvent

from dataferry.metadata import Event


def cloudevent(event: Event) -> CloudEvent:
    attributes = {"type": event.type, "source": event.source, "id": event.id,
                  "time": event.time.isoformat(), "datacontenttype": "application/json"}
    if event.subject is not None:
        attributes["subject"] = event.subject
    return CloudEvent(attributes, event.data)


def event_json(event: Event) -> bytes:
    """The event in CloudEvents' structured JSON mode."""
    return to_json(cloudevent(event))
