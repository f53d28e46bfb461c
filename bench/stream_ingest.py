"""Stream sources: how fast one ``ferry run`` turns waiting messages into a version.

Publishes ``--messages`` JSON messages over ``--keys`` keys (so most keys arrive several
times: the last wins) to an MQTT broker of its own (mosquitto, queues unlimited) and to a
JetStream stream on the NATS server at 127.0.0.1:4222, while no run is connected, then
times ``ferry run`` of each dataset (connect, read, convert, merge by key, publish and
sign, acknowledge) and prints messages per second. MQTT takes at most 65,535 messages a
run (the protocol's Receive Maximum).

    python bench/stream_ingest.py [--messages 50000] [--keys 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import ECOSYSTEM, write_files
from tests.connectors.brokers import JetStream, own_mosquitto, publish_mqtt, unique

from dataferry.cli.main import invoke

TEAM = """\
team: iot
zone: eu
owners: [iot@acme.example]
sources:
  lab:
    kind: mqtt
    url: mqtt://127.0.0.1:{port}
    client_id: {client}
    datasets:
      mqtt_readings: &readings
        topic: {base}/+
        primary_key: [device]
        batch: {{seconds: 600, rows: 65535}}
        fields: {{device: "$topic[1]", celsius: payload.t.c}}
        columns:
          device: {{type: string, nullable: false}}
          seq: int64
          celsius: float64
          note: string
  bus:
    kind: nats
    url: nats://127.0.0.1:4222
    subject: {prefix}.*
    durable: {prefix}
    datasets:
      nats_readings:
        primary_key: [device]
        batch: {{seconds: 600, rows: 1000000}}
        fields: {{device: "$subject[1]", celsius: payload.t.c}}
        columns:
          device: {{type: string, nullable: false}}
          seq: int64
          celsius: float64
          note: string
"""


def timed_run(root: Path, ref: str) -> float:
    start = time.perf_counter()
    code = invoke(["run", ref, "--model", str(root)])
    assert code == 0, f"ferry run {ref} failed"
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--keys", type=int, default=10_000)
    args = parser.parse_args()
    n = min(args.messages, 65_535)
    payloads = [(f"d{i % args.keys}", {"seq": i, "t": {"c": i / 10}, "note": "x" * 40})
                for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp, own_mosquitto(Path(tmp) / "mqtt") as port:
        stream = JetStream()
        stream.create()
        try:
            base = unique("bench")
            root = write_files(Path(tmp) / "model", {
                "ferry.yaml": ECOSYSTEM, "teams/iot/iot.yaml": TEAM.format(
                    port=port, client=unique("b"), base=base, prefix=stream.prefix)})
            assert invoke(["check", "--connect", "--model", str(root)]) == 0
            publish_mqtt(port, [(f"{base}/{d}", p) for d, p in payloads])
            stream.publish([(f"{stream.prefix}.{d}", p) for d, p in payloads])
            for kind, ref in (("mqtt", "iot.mqtt_readings"), ("nats", "iot.nats_readings")):
                seconds = timed_run(root, ref)
                print(f"{kind}: {n} messages ({args.keys} keys) -> one version in "
                      f"{seconds:.2f} s: {n / seconds:,.0f} messages/s")
        finally:
            stream.delete()


if __name__ == "__main__":
    main()
