"""``ferry run`` of stream datasets (mqtt against a mosquitto of the test's own, nats
against the shared server): what arrived becomes one signed version merged by key, the
messages are acknowledged only after it is signed, a run SIGKILLed before or after
publishing loses nothing and doubles nothing, and payloads that do not fit land in the
dead-letter file next to the version with their reasons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import Result, require_service
from tests.connectors.brokers import JetStream, own_mosquitto, publish_mqtt, unique

TEAM = """\
team: iot
zone: eu
owners: [iot@acme.example]
sources:
  {source}
    datasets:
      readings:
        primary_key: [device]
        batch: {{seconds: 30, rows: 20000}}
        fields:
          device: {device}
          celsius: payload.t.c
        columns:
          device: {{type: string, nullable: false}}
          seq: {{type: int64, nullable: false}}
          celsius: {{type: float64}}
"""


class Broker:
    """One of the two stream kinds: its model and how to publish a reading."""

    kind: str

    def team(self) -> str:
        raise NotImplementedError

    def publish(self, readings: list[tuple[str, Any]]) -> None:
        raise NotImplementedError


class Mqtt(Broker):
    kind = "mqtt"

    def __init__(self, port: int) -> None:
        self.port, self.base = port, unique("lab")

    def team(self) -> str:
        return TEAM.format(source=f"lab:\n    kind: mqtt\n    url: mqtt://127.0.0.1:{self.port}\n"
                                  f"    topic: {self.base}/+/reading\n"
                                  f"    client_id: {unique('t')}",
                           device="$topic[1]")

    def publish(self, readings: list[tuple[str, Any]]) -> None:
        publish_mqtt(self.port, [(f"{self.base}/{device}/reading", payload)
                                 for device, payload in readings])


class Nats(Broker):
    kind = "nats"

    def __init__(self, stream: JetStream) -> None:
        self.stream = stream

    def team(self) -> str:
        return TEAM.format(source=f"lab:\n    kind: nats\n    url: nats://127.0.0.1:4222\n"
                                  f"    subject: {self.stream.prefix}.*.reading\n"
                                  f"    durable: {self.stream.prefix}",
                           device="$subject[1]")

    def publish(self, readings: list[tuple[str, Any]]) -> None:
        self.stream.publish([(f"{self.stream.prefix}.{device}.reading", payload)
                             for device, payload in readings])


@pytest.fixture(params=["mqtt", "nats"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    if request.param == "mqtt":
        with own_mosquitto(tmp_path / "mosquitto") as port:
            yield Mqtt(port)
        return
    require_service("nats")
    stream = JetStream()
    stream.create()
    try:
        yield Nats(stream)
    finally:
        stream.delete()


@pytest.fixture
def root(broker: Broker, model: Callable[..., Path], ferry: Callable[..., Result]) -> Path:
    path = model({"teams/iot/iot.yaml": broker.team()})
    checked = ferry("check", "--connect", "--model", path)  # mqtt: makes the session
    assert checked.code == 0 and "unreachable" not in checked.out, checked
    return path


def stored(root: Path, ferry: Callable[..., Result], tmp: Path) -> dict[str, tuple[int, Any]]:
    out = tmp / f"export-{unique('')}.parquet"
    result = ferry("export", "iot.readings", out, "--model", root)
    assert result.code == 0, result
    return {r["device"]: (r["seq"], r["celsius"]) for r in pq.read_table(out).to_pylist()}


def versions(root: Path, ferry: Callable[..., Result]) -> int:
    result = ferry("log", "iot.readings", "--json", "--model", root)
    assert result.code == 0, result
    return len(json.loads(result.out))


def run(root: Path, ferry: Callable[..., Result]) -> Result:
    result = ferry("run", "iot.readings", "--model", root)
    assert result.code == 0, result
    return result


def killed_run(root: Path, crash_at: str) -> None:
    env = {**os.environ, "FERRY_CRASH_AT": crash_at}
    done = subprocess.run([sys.executable, "-m", "dataferry.cli", "run", "iot.readings",
                           "--model", str(root)], env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_10000_messages_with_duplicates_become_one_version_last_wins(
        broker: Broker, root: Path, ferry: Callable[..., Result], tmp_path: Path) -> None:
    # published while no run is active: the session / durable consumer keeps them
    broker.publish([(f"d{n % 5000}", {"seq": n, "t": {"c": n / 4}}) for n in range(10_000)])
    run(root, ferry)
    rows = stored(root, ferry, tmp_path)
    assert len(rows) == 5000
    assert rows == {f"d{d}": (5000 + d, (5000 + d) / 4) for d in range(5000)}
    assert versions(root, ferry) == 1
    run(root, ferry)  # acknowledged: nothing comes again, no version
    assert versions(root, ferry) == 1
    broker.publish([("d1", {"seq": 20_000}), ("new", {"seq": 20_001, "t": {"c": -1}})])
    run(root, ferry)
    rows = stored(root, ferry, tmp_path)
    assert rows["d1"] == (20_000, None) and rows["new"] == (20_001, -1.0)
    assert len(rows) == 5001 and versions(root, ferry) == 2
    assert subprocess.run([sys.executable, "-m", "dataferry.cli", "verify", "--model",
                           str(root)], capture_output=True).returncode == 0


@pytest.mark.parametrize("crash_at", ["write-file", "cdc-before-acknowledge"])
def test_a_run_killed_before_or_after_publishing_loses_and_doubles_nothing(
        broker: Broker, root: Path, ferry: Callable[..., Result], tmp_path: Path,
        crash_at: str) -> None:
    broker.publish([(f"d{n % 300}", {"seq": n}) for n in range(1000)])
    killed_run(root, crash_at)
    broker.publish([("late", {"seq": 5000})])
    run(root, ferry)
    rows = stored(root, ferry, tmp_path)
    last = {f"d{d}": (d + 300 * ((999 - d) // 300), None) for d in range(300)}
    assert rows == {**last, "late": (5000, None)}
    published = versions(root, ferry)
    assert published == (1 if crash_at == "write-file" else 2)
    run(root, ferry)  # everything acknowledged now
    assert versions(root, ferry) == published
    assert stored(root, ferry, tmp_path) == rows


def test_payloads_that_do_not_fit_are_kept_in_the_dead_letter_file(
        broker: Broker, root: Path, ferry: Callable[..., Result], tmp_path: Path) -> None:
    broker.publish([("a", {"seq": 1, "t": {"c": 1.5}}), ("b", b"<xml/>"),
                    ("c", {"seq": "many"}), ("d", {"t": {"c": 2}}), ("e", {"seq": 5})])
    result = run(root, ferry)
    assert "did not fit" in result.out + result.err
    assert stored(root, ferry, tmp_path) == {"a": (1, 1.5), "e": (5, None)}
    files = list((root / ".ferry").rglob("_dead_letters/*.jsonl"))
    assert len(files) == 1
    letters = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [letter.get("payload") for letter in letters] == [
        "<xml/>", '{"seq": "many"}', '{"t": {"c": 2}}']
    assert "not JSON" in letters[0]["reason"]
    assert "'seq'" in letters[1]["reason"] and "many" in letters[1]["reason"]
    assert "'seq'" in letters[2]["reason"] and "null" in letters[2]["reason"]
    run(root, ferry)  # they are not read again
    assert len(list((root / ".ferry").rglob("_dead_letters/*.jsonl"))) == 1
