"""Messages to a change set (``connectors.stream.collect``) and the names stream sources
use (``model.streamnames``): no broker needed."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataferry.connectors.stream.collect import ChangeCollector, Message
from dataferry.model.spec import SourceDataset
from dataferry.model.streamnames import (
    FieldPath,
    mqtt_filter_problem,
    nats_subject_problem,
    parse_field_path,
)


def dataset(**keys: Any) -> SourceDataset:
    return SourceDataset.model_validate({
        "primary_key": ["device"],
        "columns": {"device": {"type": "string", "nullable": False}, "value": "int64",
                    "reading": "decimal(6,2)", "tags": "list<string>"},
        **keys})


def collect(spec: SourceDataset, messages: list[tuple[str, Any]],
            separator: str = "/") -> ChangeCollector:
    collector = ChangeCollector("lab.readings", spec, list(spec.columns), separator)
    for index, (topic, payload) in enumerate(messages):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        collector.add(Message(data, topic, {"topic": topic, "n": index}))
    return collector


def upserts(collector: ChangeCollector) -> list[dict[str, Any]]:
    changes = collector.change_set({"n": 1}, lambda: None, lambda: None)
    assert changes.snapshot is False and changes.deleted_keys is None
    return changes.upserts.read_all().to_pylist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(-2**62, 2**62)),
                max_size=3000))
def test_the_last_message_of_a_key_wins(readings: list[tuple[str, int]]) -> None:
    collector = collect(dataset(), [("lab/x", {"device": d, "value": v}) for d, v in readings])
    expected: dict[str, int] = {}
    for device, value in readings:
        expected.pop(device, None)
        expected[device] = value  # a key's place is where its last message came
    assert [(r["device"], r["value"]) for r in upserts(collector)] == list(expected.items())


def test_field_paths_pick_nested_members_and_topic_levels() -> None:
    spec = dataset(fields={"device": "$topic[1]", "value": "payload.m.v",
                           "reading": "payload.r", "tags": "payload.meta.tags"})
    collector = collect(spec, [("lab/d1/x", {"m": {"v": 7}, "r": 0.1,
                                             "meta": {"tags": ["a", "b"]}}),
                               ("lab/d2/x", {"m": None})])
    assert upserts(collector) == [
        {"device": "d1", "value": 7, "reading": Decimal("0.10"), "tags": ["a", "b"]},
        {"device": "d2", "value": None, "reading": None, "tags": None}]


def test_numbers_stay_exact() -> None:
    collector = collect(dataset(fields={"device": "$topic"}),
                        [("t", b'{"reading": 1234.56, "value": 9007199254740993}')])
    row = upserts(collector)[0]
    assert str(row["reading"]) == "1234.56" and row["value"] == 9007199254740993


def test_the_whole_topic_and_negative_levels() -> None:
    spec = SourceDataset.model_validate({
        "primary_key": ["device"], "fields": {"device": "$subject[-1]", "tags": "payload",
                                              "whole": "$subject"},
        "columns": {"device": "string", "tags": "list<string>", "whole": "string"}})
    collector = collect(spec, [("lab.sensors.d9", ["x"])], separator=".")
    assert upserts(collector) == [{"device": "d9", "tags": ["x"], "whole": "lab.sensors.d9"}]


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{", "not JSON"),
    (b"\xc3\x28", "not UTF-8"),
    ({"device": "a", "value": "x"}, "column 'value'"),
    ({"device": "a", "tags": "notalist"}, "expected an array"),
    ({"value": 1}, "primary key"),
    ({"device": "a", "reading": 12345.678}, "column 'reading'"),
    ([1, 2], "payload is an array, not an object"),
])
def test_a_misfit_is_a_dead_letter_and_the_rest_goes_on(payload: Any, reason: str) -> None:
    collector = collect(dataset(), [("t", {"device": "ok", "value": 1}), ("t", payload),
                                    ("t", {"device": "ok2"})])
    assert [r["device"] for r in upserts(collector)] == ["ok", "ok2"]
    [letter] = collector.dead_letters
    assert reason in letter.reason, letter.reason
    assert letter.origin == {"topic": "t", "n": 1}
    assert json.loads(letter.to_json_line())["reason"] == letter.reason


def test_many_misfits_among_many_messages() -> None:
    messages: list[tuple[str, Any]] = [
        ("t", {"device": f"d{n}", "value": n if n % 7 else "seven"}) for n in range(5000)]
    collector = collect(dataset(), messages)
    rows = upserts(collector)
    assert len(rows) == 5000 - len(range(0, 5000, 7))
    assert len(collector.dead_letters) == len(range(0, 5000, 7))


@pytest.mark.parametrize(("text", "path"), [
    ("payload", FieldPath()),
    ("payload.t.c", FieldPath(members=("t", "c"))),
    ("$topic", FieldPath(topic=True)),
    ("$topic[2]", FieldPath(topic=True, level=2)),
    ("$subject[-1]", FieldPath(topic=True, level=-1)),
])
def test_field_paths(text: str, path: FieldPath) -> None:
    assert parse_field_path(text) == path


@pytest.mark.parametrize("text", ["t.c", "payload.", "payload..x", "$topic[x]", "$time", ""])
def test_bad_field_paths_say_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match="is not a field path"):
        parse_field_path(text)


@given(st.lists(st.text(st.characters(blacklist_characters=".", blacklist_categories=("Cs",)),
                        min_size=1), max_size=5))
def test_any_member_names_round_trip(members: list[str]) -> None:
    assert parse_field_path(".".join(["payload", *members])).members == tuple(members)


@pytest.mark.parametrize(("topic", "ok"), [
    ("a/b/c", True), ("a/+/c", True), ("#", True), ("a/#", True), ("+", True), ("/a", True),
    ("a/#/c", False), ("a/b#", False), ("a/+b", False), ("", False), ("a\0b", False),
])
def test_mqtt_topic_filters(topic: str, ok: bool) -> None:
    assert (mqtt_filter_problem(topic) is None) is ok


@pytest.mark.parametrize(("subject", "ok"), [
    ("a.b.c", True), ("a.*.c", True), (">", True), ("a.>", True), ("*", True),
    ("a.>.c", False), ("a.b>", False), ("a.*b", False), ("a..b", False), (".a", False),
    ("a b", False), ("", False),
])
def test_nats_subjects(subject: str, ok: bool) -> None:
    assert (nats_subject_problem(subject) is None) is ok
