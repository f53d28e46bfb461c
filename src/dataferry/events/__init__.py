"""Events: what happened, as CloudEvents 1.0.

The metadata DB's outbox (``dataferry.metadata.outbox``) holds them, written with the
change each announces; this package turns them into CloudEvents for whoever listens: the
``/api/v1/events`` stream of ``ferry serve`` (and, to come, consumers' webhooks and NATS
subjects).
"""

from dataferry.events.cloudevents import cloudevent, event_json

__all__ = ["cloudevent", "event_json"]
