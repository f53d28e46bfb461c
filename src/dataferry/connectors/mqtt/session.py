"""One dataset's persistent MQTT session: connect, subscribe, receive, acknowledge.

MQTT 5 with ``clean_start`` off and a session that never expires: the broker keeps the
subscription, and queues every QoS 1 message that arrives while no run is connected
(mosquitto: up to ``max_queued_messages``, 1000 unless configured). Messages are received
with ``manual_ack``: the broker gets the PUBACK only when ``acknowledge`` is called, after
the version is signed; a run that dies before that gets them again (re-sent first, in
order) on its next connect. ``Receive Maximum`` lets the broker send up to the run's
batch (at most 65535, MQTT's limit) before any is acknowledged.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from dataferry.errors import SourceError, TransientError
from dataferry.secrets import Secret, redact

__all__ = ["Received", "Session", "SessionOptions"]

NEVER_EXPIRES = 0xFFFFFFFF
"""MQTT 5 session expiry interval meaning: keep the session until the client ends it."""
RECEIVE_MAXIMUM = 65535
"""The most QoS 1 messages MQTT lets a broker send before the client acknowledges one."""
_TERMINAL_CONNACK = {"Bad user name or password", "Not authorized", "Banned",
                     "Client identifier not valid", "Unsupported protocol version",
                     "Bad authentication method"}


@dataclass(frozen=True)
class SessionOptions:
    """Where and as whom to connect (secrets resolved, where the job runs)."""

    url: str
    client_id: str
    username: str | None = None
    password: Secret | None = None
    ca_file: Path | None = None
    receive_maximum: int = RECEIVE_MAXIMUM
    timeout: float = 10.0


@dataclass(frozen=True)
class Received:
    """One message received and not yet acknowledged."""

    mid: int
    topic: str
    payload: bytes
    redelivered: bool


class Session:
    """A connected persistent session; ``close`` disconnects (the session stays)."""

    def __init__(self, options: SessionOptions, what: str) -> None:
        self.options, self.what = options, what
        url = urlsplit(options.url)
        if url.scheme not in ("mqtt", "mqtts"):
            raise SourceError(f"{what}: url {self.shown_url} is not mqtt://host:port or "
                              "mqtts://host:port", public=True)
        self.host = url.hostname or "localhost"
        self.port = url.port or (8883 if url.scheme == "mqtts" else 1883)
        username = options.username or (unquote(url.username) if url.username else None)
        self.messages: queue.Queue[Received] = queue.Queue()
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        self._suback: queue.Queue[list[ReasonCode]] = queue.Queue()
        self._unsuback: queue.Queue[int] = queue.Queue()
        self._gone = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=options.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if username is not None or options.password is not None:
            client.username_pw_set(username, options.password.reveal()
                                   if options.password is not None else None)
        if url.scheme == "mqtts":
            ca = str(options.ca_file) if options.ca_file is not None else None
            try:
                client.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError) as exc:
                raise SourceError(f"{what}: cannot use ca_file {ca}: {exc}",
                                  public=True) from None
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self.client = client
        self._connect()

    @property
    def shown_url(self) -> str:
        return redact(self.options.url, self.options.password)

    # --- paho callbacks (its network thread) -------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Any) -> None:
        self._connack.put(reason)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Any) -> None:
        self._suback.put(reasons)

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                        reasons: list[ReasonCode], properties: Any) -> None:
        self._unsuback.put(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        self.messages.put(Received(message.mid, message.topic, bytes(message.payload),
                                   bool(message.dup)))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        self._gone.set()

    # --- the session -------------------------------------------------------------------

    def _connect(self) -> None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = NEVER_EXPIRES
        properties.ReceiveMaximum = max(1, min(self.options.receive_maximum, RECEIVE_MAXIMUM))
        where = f"{self.what}: MQTT broker {self.host}:{self.port}"
        try:
            self.client.connect(self.host, self.port, keepalive=60, clean_start=False,
                                properties=properties)
        except ssl.SSLError as exc:
            raise SourceError(f"{where}: TLS failed ({exc.reason or exc}); check ca_file and "
                              "that the broker's certificate names this host",
                              public=True) from None
        except OSError as exc:
            raise TransientError(f"{where} cannot be reached ({exc.strerror or exc})",
                                 public=True) from None
        self.client.loop_start()
        try:
            reason = self._connack.get(timeout=self.options.timeout)
        except queue.Empty:
            self.close()
            raise TransientError(f"{where} did not answer the connect within "
                                 f"{self.options.timeout:g}s", public=True) from None
        if reason.is_failure:
            self.close()
            error = SourceError if str(reason) in _TERMINAL_CONNACK else TransientError
            hint = ("; check username and password" if "password" in str(reason)
                    or "authorized" in str(reason) else "")
            raise error(f"{where} refused the connection: {reason}{hint}", public=True)

    def subscribe(self, topic: str) -> None:
        """Subscribe with QoS 1 (again: the persistent session already may be)."""
        self.client.subscribe(topic, qos=1)
        try:
            reasons = self._suback.get(timeout=self.options.timeout)
        except queue.Empty:
            raise TransientError(f"{self.what}: the broker did not confirm the subscription "
                                 f"to {topic!r} within {self.options.timeout:g}s",
                                 public=True) from None
        if any(reason.is_failure for reason in reasons):
            raise SourceError(f"{self.what}: the broker refused the subscription to "
                              f"{topic!r}: {', '.join(str(r) for r in reasons)}", public=True)

    def receive(self, *, rows: int, seconds: float, quiet: float) -> list[Received]:
        """Messages until ``rows`` are in, ``seconds`` passed, or none came for ``quiet``
        seconds (what was waiting has arrived)."""
        received: list[Received] = []
        deadline = time.monotonic() + seconds
        while len(received) < rows:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                received.append(self.messages.get(timeout=min(quiet, left)))
            except queue.Empty:
                if not self.client.is_connected():
                    raise TransientError(f"{self.what}: the MQTT broker closed the "
                                         "connection during the read", public=True) from None
                break
        return received

    def acknowledge(self, received: list[Received]) -> None:
        """PUBACK each message: the broker then drops it from the session. Returns once
        the broker has them (a disconnect right after could drop some still unsent)."""
        for message in received:
            self.client.ack(message.mid, 1)
        # The broker answers in order: its UNSUBACK comes after it took every PUBACK.
        _, mid = self.client.unsubscribe(f"$ferry/acknowledged/{self.options.client_id}")
        deadline = time.monotonic() + self.options.timeout * 6
        while time.monotonic() < deadline:
            try:
                if self._unsuback.get(timeout=max(0.0, deadline - time.monotonic())) == mid:
                    return
            except queue.Empty:
                break
        raise TransientError(f"{self.what}: the broker did not confirm the acknowledgement of "
                             f"{len(received)} messages; they come again next run (merged by "
                             "key, they change nothing twice)", public=True)

    def close(self) -> None:
        """Disconnect (after sending what is queued, acknowledgements included)."""
        if self.client.is_connected():
            self.client.disconnect()
            self._gone.wait(self.options.timeout)
        self.client.loop_stop()
