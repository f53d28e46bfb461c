"""The NATS source against the shared NATS server (JetStream on 4222), a stream of its own
per test: a durable consumer, acks only when asked, the head's position as the truth after
a crash, the last message per key, dead letters. ``ferry run``: tests/engine/."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.changes import ChangeSet
from dataferry.connectors.nats import NatsSource
from dataferry.errors import SourceError, TransientError
from dataferry.model.spec import NatsSource as NatsSpec
from tests.connectors.brokers import JetStream, free_port, jetstream

__all__ = ["jetstream"]

COLUMNS = {"device": {"type": "string", "nullable": False}, "seq": "int32", "celsius": "float64"}


def source(js: JetStream, **dataset: Any) -> tuple[NatsSource, ReadRequest]:
    keys = {"url", "stream", "token"}
    spec = NatsSpec.model_validate({
        "kind": "nats", "url": dataset.pop("url", "nats://127.0.0.1:4222"),
        "subject": f"{js.prefix}.*.reading", "durable": js.prefix,
        **{k: v for k, v in dataset.items() if k in keys},
        "datasets": {"readings": {
            "primary_key": ["device"], "columns": COLUMNS,
            "fields": {"device": "$subject[1]", "celsius": "payload.t.c"},
            **{k: v for k, v in dataset.items() if k not in keys}}}})
    ds = spec.datasets["readings"]
    return NatsSource("lab.bus", spec, Path(".")), ReadRequest("lab.readings", ds,
                                                                list(ds.columns))


def rows(changes: ChangeSet) -> list[dict[str, Any]]:
    return changes.upserts.read_all().to_pylist()


def take(connector: NatsSource, request: ReadRequest, *, ack: bool = True
         ) -> tuple[list[dict[str, Any]], ChangeSet]:
    changes = connector.read_changes(request)
    try:
        got = rows(changes)
        if ack:
            changes.acknowledge()
    finally:
        changes.close()
    return got, changes


def test_the_last_message_of_each_key_wins_over_10000_messages(jetstream: JetStream) -> None:
    connector, request = source(jetstream, batch={"seconds": 60, "rows": 20_000})
    jetstream.publish([(f"{jetstream.prefix}.d{n % 2000}.reading",
                        {"seq": n, "t": {"c": n / 10}}) for n in range(10_000)])
    got, changes = take(connector, request)
    assert changes.position == {"stream": jetstream.name, "stream_seq": 10_000}
    assert len(got) == 2000
    assert {r["device"]: r["seq"] for r in got} == {f"d{d}": 8000 + d for d in range(2000)}
    request.state = changes.position
    again, _ = take(connector, request)
    assert again == []
    info = jetstream.consumer_info(f"{jetstream.prefix}_lab_readings")
    assert info.num_ack_pending == 0 and info.num_pending == 0


def test_messages_published_between_runs_arrive_at_the_next_run(jetstream: JetStream) -> None:
    connector, request = source(jetstream)
    first, changes = take(connector, request)
    assert first == []
    request.state = changes.position
    jetstream.publish([(f"{jetstream.prefix}.a.reading", {"seq": 1, "t": {"c": 20.5}})])
    got, changes = take(connector, request)
    assert got == [{"device": "a", "seq": 1, "celsius": 20.5}]
    assert changes.position["stream_seq"] == 1


def test_unacknowledged_messages_are_read_again_from_the_heads_position(
        jetstream: JetStream) -> None:
    connector, request = source(jetstream)
    jetstream.publish([(f"{jetstream.prefix}.a.reading", {"seq": n}) for n in range(5)])
    got, changes = take(connector, request, ack=False)  # the version failed
    assert got == [{"device": "a", "seq": 4, "celsius": None}]
    again, changes = take(connector, request)  # no head yet: from the start again
    assert again == got and changes.position["stream_seq"] == 5


def test_published_but_not_acknowledged_is_skipped_not_doubled(jetstream: JetStream) -> None:
    connector, request = source(jetstream)
    jetstream.publish([(f"{jetstream.prefix}.a.reading", {"seq": n}) for n in range(3)])
    got, changes = take(connector, request, ack=False)
    request.state = changes.position  # the version was signed with this position; no ack
    jetstream.publish([(f"{jetstream.prefix}.b.reading", {"seq": 10})])
    got, changes = take(connector, request)
    assert got == [{"device": "b", "seq": 10, "celsius": None}]
    assert changes.position["stream_seq"] == 4


def test_a_run_killed_mid_read_loses_nothing(jetstream: JetStream, tmp_path: Path) -> None:
    connector, request = source(jetstream, batch={"seconds": 60, "rows": 5000})
    jetstream.publish([(f"{jetstream.prefix}.d{n % 100}.reading", {"seq": n})
                       for n in range(3000)])
    script = tmp_path / "reader.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from pathlib import Path
        from dataferry.connectors.nats import NatsSource
        from dataferry.connectors.base import ReadRequest
        from dataferry.model.spec import NatsSource as Spec
        spec = Spec.model_validate_json({connector.spec.model_dump_json()!r})
        ds = spec.datasets["readings"]
        changes = NatsSource("lab.bus", spec, Path(".")).read_changes(
            ReadRequest("lab.readings", ds, list(ds.columns)))
        print(changes.position["stream_seq"], flush=True)
        time.sleep(60)  # "publishing": killed here, nothing acknowledged
    """))
    reader = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "3000"
    reader.kill()
    reader.wait()
    got, changes = take(connector, request)
    assert {r["device"]: r["seq"] for r in got} == {f"d{d}": 2900 + d for d in range(100)}
    assert changes.position["stream_seq"] == 3000


def test_payloads_that_do_not_fit_are_dead_letters_with_reasons(jetstream: JetStream) -> None:
    connector, request = source(jetstream)
    p = jetstream.prefix
    jetstream.publish([(f"{p}.a.reading", {"seq": 1, "t": {"c": 1.5}}),
                       (f"{p}.b.reading", b"{oops"),
                       (f"{p}.c.reading", {"seq": [1]}),
                       (f"{p}.d.reading", {"seq": 2, "t": {"c": True}})])
    changes = connector.read_changes(request)
    assert rows(changes) == [{"device": "a", "seq": 1, "celsius": 1.5}]
    letters = {letter.origin["stream_seq"]: letter for letter in changes.dead_letters}
    assert sorted(letters) == [2, 3, 4]
    assert "not JSON" in letters[2].reason and letters[2].payload == b"{oops"
    assert "'seq'" in letters[3].reason
    assert "'celsius'" in letters[4].reason
    changes.acknowledge()
    changes.close()


def test_a_subject_no_stream_holds_is_a_clear_error(jetstream: JetStream) -> None:
    connector, request = source(jetstream, subject="nobody.holds.this")
    with pytest.raises(SourceError, match="no JetStream stream holds subject"):
        connector.read_changes(request)
    named, request = source(jetstream, stream="NO_SUCH_STREAM")
    with pytest.raises(SourceError, match="does not exist"):
        named.read_changes(request)


def test_an_unreachable_server_is_transient(jetstream: JetStream) -> None:
    connector, request = source(jetstream, url=f"nats://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError, match="cannot be reached"):
        connector.read_changes(request)


def test_a_wrong_token_is_refused_without_showing_it(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import socket
    import time

    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port = free_port()
    process = subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(port), "--auth",
                                "tok-right-123", "-js", "-sd", str(tmp_path / "js")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.05)
        monkeypatch.setenv("LAB_NATS_TOKEN", "tok-wrong-456")
        spec = NatsSpec.model_validate({
            "kind": "nats", "url": f"nats://127.0.0.1:{port}", "subject": "lab.*",
            "token": "${env:LAB_NATS_TOKEN}", "datasets": {"r": {
                "primary_key": ["device"], "columns": COLUMNS}}})
        connector = NatsSource("lab.bus", spec, Path("."))
        with pytest.raises(SourceError) as refused:
            connector.columns("lab.r", spec.datasets["r"])
        assert "refused" in str(refused.value)
        assert "tok-" not in str(refused.value)
    finally:
        process.terminate()
        process.wait(10)
