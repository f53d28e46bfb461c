"""``ferry check`` on stream sources (mqtt, nats): the findings, where they point, and
that a good stream model is clean."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dataferry.model.check import check_model

GOOD = """\
team: iot
zone: eu
owners: [iot@acme.example]
sources:
  lab:
    kind: mqtt
    url: mqtts://broker.lab:8883
    username: ferry
    password: ${env:LAB_MQTT}
    topic: lab/+/reading
    datasets:
      readings:
        primary_key: [device]
        batch: {seconds: 5, rows: 500}
        fields:
          device: $topic[1]
          celsius: payload.t.c
        columns:
          device: {type: string, nullable: false}
          celsius: float64
  bus:
    kind: nats
    url: nats://nats.lab:4222
    token: ${env:LAB_NATS}
    datasets:
      runs:
        subject: instruments.*.runs
        primary_key: [run_id]
        fields:
          instrument: $subject[-2]
        columns:
          run_id: {type: int64, nullable: false}
          instrument: string
"""


def findings(root: Path) -> list[tuple[str, int, str]]:
    return [(f.code, f.line, f.message) for f in check_model(root).findings]


def test_a_good_stream_model_is_clean(model: Callable[..., Path]) -> None:
    assert findings(model({"teams/iot/iot.yaml": GOOD})) == []


@pytest.mark.parametrize(("old", "new", "code", "line", "words"), [
    ("    topic: lab/+/reading", "    topic: lab/+x/reading", "invalid-field", 10,
     "+ must be a whole level"),
    ("    topic: lab/+/reading", "    topic: lab/#/reading", "invalid-field", 10,
     "# must be a whole level and the last one"),
    ("        subject: instruments.*.runs", "        subject: instruments..runs",
     "invalid-field", 27, "tokens cannot be empty"),
    ("          celsius: payload.t.c", "          celsius: t.c", "invalid-field", 17,
     "start it with payload"),
    ("          celsius: payload.t.c", "          celsius: $time", "invalid-field", 17,
     "$topic and $topic[N]"),
    ("          celsius: payload.t.c", "          kelvin: payload.t.k", "unknown-reference",
     17, "unknown column 'kelvin'"),
    ("          device: $topic[1]", "          device: $topic[3]", "invalid-field", 16,
     "names level 3, but topic 'lab/+/reading' has 3 levels"),
    ("    topic: lab/+/reading\n", "", "invalid-field", 12, "needs topic:"),
    ("        primary_key: [run_id]\n", "", "missing-primary-key", 27,
     "a nats dataset needs a primary_key"),
    ("    token: ${env:LAB_NATS}", "    token: hunter2", "plaintext-secret", 24, "token"),
    ("        batch: {seconds: 5, rows: 500}", "        batch: {seconds: 0}",
     "invalid-field", 14, "seconds"),
    ("        batch: {seconds: 5, rows: 500}", "        capture: incremental",
     "invalid-field", 14, "capture: does not apply"),
])
def test_stream_findings(model: Callable[..., Path], old: str, new: str, code: str,
                         line: int, words: str) -> None:
    assert old in GOOD
    found = findings(model({"teams/iot/iot.yaml": GOOD.replace(old, new)}))
    assert any(c == code and words in m for c, _, m in found), found
    assert [c for c, _, _ in found] == [code], found
    assert [n for c, n, _ in found] == [line], found


def test_stream_keys_on_other_sources_are_refused(model: Callable[..., Path]) -> None:
    team = """\
team: iot
zone: eu
owners: [iot@acme.example]
sources:
  db:
    kind: sqlite
    path: x.db
    datasets:
      t:
        table: t
        topic: a/b
        fields: {x: payload.x}
        columns: {x: int64}
"""
    found = findings(model({"teams/iot/iot.yaml": team}))
    assert sorted(m for _, _, m in found) == [
        "iot.t: fields: applies only to mqtt and nats sources",
        "iot.t: topic: applies only to an mqtt source"]


def test_check_connect_reports_an_unreachable_broker(
        model: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.connectors.brokers import free_port

    monkeypatch.setenv("LAB_MQTT", "secret-one")
    monkeypatch.setenv("LAB_NATS", "secret-two")
    team = (GOOD.replace("mqtts://broker.lab:8883", f"mqtt://127.0.0.1:{free_port()}")
            .replace("nats://nats.lab:4222", f"nats://127.0.0.1:{free_port()}"))
    result = check_model(model({"teams/iot/iot.yaml": team}), connect=True)
    assert result.ok
    found = sorted((f.code, f.severity, f.message.split(":")[0]) for f in result.findings)
    assert found == [("unreachable", "warning", "iot.readings"),
                     ("unreachable", "warning", "iot.runs")]
    assert all("cannot be reached" in f.message and "secret" not in f.message
               for f in result.findings)
