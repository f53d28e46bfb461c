"""``ferry up`` and stream datasets: an mqtt dataset nobody consumes yet is still ingested,
every ``batch: seconds``, each run a version of what arrived (a mosquitto of its own)."""

from __future__ import annotations

from pathlib import Path

from dataferry.broker.graph import build_graph
from dataferry.model.graph import ModelIndex
from dataferry.model.load import load_model
from tests.broker.test_scheduler import Clock, ran, scheduler
from tests.conftest import ECOSYSTEM, write_files
from tests.connectors.brokers import own_mosquitto, publish_mqtt, unique

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
      readings:
        topic: {base}/+
        primary_key: [device]
        batch: {{seconds: 30, rows: 1000}}
        fields: {{device: "$topic[1]"}}
        columns:
          device: {{type: string, nullable: false}}
          seq: int64
"""


def test_a_stream_dataset_is_ingested_every_batch_seconds(tmp_path: Path) -> None:
    base = unique("lab")
    with own_mosquitto(tmp_path / "mosquitto") as port:
        root = write_files(tmp_path / "model", {
            "ferry.yaml": ECOSYSTEM,
            "teams/iot/iot.yaml": TEAM.format(port=port, client=unique("t"), base=base)})
        loaded = load_model(root)
        assert loaded.ecosystem is not None
        jobs = build_graph(ModelIndex(loaded.ecosystem)).jobs
        assert jobs["ingest:iot.readings"].trigger == "stream"  # nobody consumes it

        clock = Clock()
        first = scheduler(root, clock)
        first.run_until_idle()  # the first run makes the session
        publish_mqtt(port, [(f"{base}/a", {"seq": 1}), (f"{base}/b", {"seq": 2})])
        clock.advance(seconds=20)
        assert first.tick().started == []  # not yet: every 30 seconds
        clock.advance(seconds=11)
        first.run_until_idle()
        first.close()
        assert [t for job, t, status in ran(root) if status == "succeeded"] == [
            "schedule", "schedule"]
        head = (root / ".ferry" / "store" / "iot" / "readings")
        assert head.is_dir()
