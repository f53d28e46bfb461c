"""Message brokers for the stream sources' tests: a private mosquitto, MQTT and NATS
helpers (publish, end a session, a JetStream stream made and deleted per test)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import require_service

MOSQUITTO = "/usr/sbin/mosquitto"
NATS_URL = "nats://127.0.0.1:4222"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def own_mosquitto(directory: Path, extra: str = "", port: int | None = None) -> Iterator[int]:
    """A mosquitto of this test's own on a free port (queues unlimited, so an offline
    session keeps more than the default 1000 messages); stopped and removed after."""
    if shutil.which(MOSQUITTO) is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    port = port or free_port()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\n"
                      "max_queued_messages 0\nmax_inflight_messages 0\n"
                      "persistence false\n"
                      # as root it would drop to user mosquitto, who cannot read pytest's dirs
                      + ("user root\n" if os.geteuid() == 0 else "")
                      + (extra or "allow_anonymous true\n"),
                      encoding="utf-8")
    log = (directory / "mosquitto.log").open("wb")
    process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mosquitto did not start: "
                                       + (directory / "mosquitto.log").read_text()) from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def publish_mqtt(port: int, messages: Iterable[tuple[str, Any]], **connect: Any) -> None:
    """Publish (topic, payload) pairs with QoS 1, each confirmed; a dict/list payload is
    sent as JSON, bytes as they are."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    if connect.get("username"):
        client.username_pw_set(connect["username"], connect.get("password"))
    if connect.get("ca_file"):
        client.tls_set(ca_certs=str(connect["ca_file"]))
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        pending = []
        for topic, payload in messages:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            pending.append(client.publish(topic, data, qos=1))
            if len(pending) >= 500:
                for info in pending:
                    info.wait_for_publish(10)
                pending.clear()
        for info in pending:
            info.wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def end_mqtt_session(port: int, client_id: str) -> None:
    """End a persistent session (clean start, expiry 0), so the shared broker forgets it."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    client.connect("127.0.0.1", port, clean_start=True, properties=properties)
    client.loop_start()
    time.sleep(0.2)
    client.disconnect()
    client.loop_stop()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


class JetStream:
    """A stream of this test's own on the shared NATS server (deleted after)."""

    def __init__(self) -> None:
        self.name = unique("FERRYTEST")
        self.prefix = self.name.lower()

    async def _call(self, work: Any) -> Any:
        connection = await nats.connect(NATS_URL)
        try:
            return await work(connection.jetstream())
        finally:
            await connection.close()

    def create(self) -> None:
        async def work(js: Any) -> None:
            await js.add_stream(name=self.name, subjects=[f"{self.prefix}.>"])
        asyncio.run(self._call(work))

    def publish(self, messages: Iterable[tuple[str, Any]]) -> None:
        items = [(s, p if isinstance(p, bytes) else json.dumps(p).encode())
                 for s, p in messages]

        async def work(js: Any) -> None:
            for start in range(0, len(items), 500):
                acks = [js.publish(s, p) for s, p in items[start:start + 500]]
                await asyncio.gather(*acks)
        asyncio.run(self._call(work))

    def consumer_info(self, durable: str) -> Any:
        async def work(js: Any) -> Any:
            return await js.consumer_info(self.name, durable)
        return asyncio.run(self._call(work))

    def delete(self) -> None:
        async def work(js: Any) -> None:
            await js.delete_stream(self.name)
        asyncio.run(self._call(work))


@pytest.fixture
def jetstream() -> Iterator[JetStream]:
    require_service("nats")
    stream = JetStream()
    stream.create()
    try:
        yield stream
    finally:
        stream.delete()
