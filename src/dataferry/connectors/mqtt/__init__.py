"""The MQTT source: JSON messages of a topic filter, through a persistent session."""

from dataferry.connectors.mqtt.source import MqttSource

__all__ = ["MqttSource"]
