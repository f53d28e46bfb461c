"""The NATS source: JSON messages of a JetStream subject, through a durable consumer."""

from dataferry.connectors.nats.source import NatsSource

__all__ = ["NatsSource"]
