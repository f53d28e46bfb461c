"""The MQTT source against a real mosquitto: persistent sessions, acknowledgement only
when asked (after the version is signed), the last message per key, dead letters, TLS and
passwords. The engine's side (``ferry run``) is in tests/engine/test_stream_ingest.py."""

from __future__ import annotations

import datetime
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.changes import ChangeSet
from dataferry.connectors.mqtt import MqttSource
from dataferry.errors import SourceError, TransientError
from dataferry.model.spec import MqttSource as MqttSpec
from tests.conftest import require_service
from tests.connectors.brokers import end_mqtt_session, own_mosquitto, publish_mqtt, unique

COLUMNS = {"device": {"type": "string", "nullable": False}, "seq": "int32", "celsius": "float64"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with own_mosquitto(tmp_path_factory.mktemp("mosquitto")) as port:
        yield port


def source(port: int, *, scheme: str = "mqtt", topic: str | None = None,
           **dataset: Any) -> tuple[MqttSource, ReadRequest]:
    topic = topic or unique("lab") + "/+/reading"
    keys = {"password", "username", "ca_file", "client_id"}
    spec = MqttSpec.model_validate({
        "kind": "mqtt", "url": f"{scheme}://127.0.0.1:{port}", "topic": topic,
        "client_id": unique("t"),
        **{k: v for k, v in dataset.items() if k in keys},
        "datasets": {"readings": {
            "primary_key": ["device"], "columns": COLUMNS,
            "fields": {"device": "$topic[1]", "celsius": "payload.t.c"},
            **{k: v for k, v in dataset.items() if k not in keys}}}})
    ds = spec.datasets["readings"]
    return MqttSource("lab.broker", spec, Path(".")), ReadRequest("lab.readings", ds,
                                                                   list(ds.columns))


def base(connector: MqttSource) -> str:
    topic = connector.spec.topic
    assert topic is not None
    return topic.split("/")[0]


def rows(changes: ChangeSet) -> list[dict[str, Any]]:
    return changes.upserts.read_all().to_pylist()


def test_the_last_message_of_each_key_wins_over_10000_messages(broker: int) -> None:
    connector, request = source(broker, batch={"seconds": 60, "rows": 20_000})
    connector.columns(request.dataset, request.spec)  # the session exists from here on
    lab = base(connector)
    # 10,000 messages, 2,000 devices: each device five times, the last one wins
    messages = [(f"{lab}/d{n % 2000}/reading", {"seq": n, "t": {"c": n / 10}})
                for n in range(10_000)]
    publish_mqtt(broker, messages)
    changes = connector.read_changes(request)
    try:
        got = rows(changes)
        assert changes.position["messages"] == 10_000
        assert changes.dead_letters == []
    finally:
        changes.acknowledge()
        changes.close()
    assert len(got) == 2000
    assert {r["device"]: r["seq"] for r in got} == {f"d{d}": 8000 + d for d in range(2000)}
    assert all(r["celsius"] == r["seq"] / 10 for r in got)
    again = connector.read_changes(request)  # acknowledged: the broker dropped them
    assert rows(again) == [] and again.position["messages"] == 0
    again.close()


def test_messages_sent_while_no_run_is_connected_arrive_at_the_next_run(broker: int) -> None:
    connector, request = source(broker)
    lab = base(connector)
    first = connector.read_changes(request)  # the first run creates the session
    assert rows(first) == []
    first.acknowledge()
    first.close()
    publish_mqtt(broker, [(f"{lab}/a/reading", {"seq": 1, "t": {"c": 20.5}}),
                          (f"{lab}/b/reading", {"seq": 2, "t": {"c": 21}})])
    changes = connector.read_changes(request)
    assert sorted((r["device"], r["seq"], r["celsius"]) for r in rows(changes)) == [
        ("a", 1, 20.5), ("b", 2, 21.0)]
    changes.acknowledge()
    changes.close()


def test_unacknowledged_messages_come_again_acknowledged_ones_do_not(broker: int) -> None:
    connector, request = source(broker)
    lab = base(connector)
    connector.columns(request.dataset, request.spec)
    publish_mqtt(broker, [(f"{lab}/a/reading", {"seq": n}) for n in range(5)])
    unpublished = connector.read_changes(request)
    assert rows(unpublished) == [{"device": "a", "seq": 4, "celsius": None}]
    unpublished.close()  # the version failed: no acknowledgement
    again = connector.read_changes(request)
    assert rows(again) == [{"device": "a", "seq": 4, "celsius": None}]
    assert again.position["redelivered"] == 5
    again.acknowledge()
    again.close()
    last = connector.read_changes(request)
    assert rows(last) == []
    last.close()


def test_a_run_killed_mid_read_loses_nothing(broker: int, tmp_path: Path) -> None:
    connector, request = source(broker, batch={"seconds": 60, "rows": 5000})
    lab = base(connector)
    connector.columns(request.dataset, request.spec)
    publish_mqtt(broker, [(f"{lab}/d{n % 100}/reading", {"seq": n}) for n in range(3000)])
    # another process reads them (all in flight, unacknowledged) and is SIGKILLed
    script = tmp_path / "reader.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from dataferry.connectors.mqtt import MqttSource
        from dataferry.connectors.base import ReadRequest
        from dataferry.model.spec import MqttSource as Spec
        spec = Spec.model_validate_json({connector.spec.model_dump_json()!r})
        ds = spec.datasets["readings"]
        changes = MqttSource("lab.broker", spec, Path(".")).read_changes(
            ReadRequest("lab.readings", ds, list(ds.columns)))
        print(changes.position["messages"], flush=True)
        time.sleep(60)  # "publishing": killed here
    """))
    reader = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "3000"
    reader.kill()
    reader.wait()
    changes = connector.read_changes(request)
    assert {r["device"]: r["seq"] for r in rows(changes)} == {
        f"d{d}": 2900 + d for d in range(100)}
    assert changes.position["messages"] == 3000
    changes.acknowledge()
    changes.close()


def test_payloads_that_do_not_fit_are_dead_letters_with_reasons(broker: int) -> None:
    connector, request = source(broker)
    lab = base(connector)
    connector.columns(request.dataset, request.spec)
    publish_mqtt(broker, [
        (f"{lab}/a/reading", {"seq": 1, "t": {"c": 1.5}}),
        (f"{lab}/b/reading", b"not json {"),
        (f"{lab}/c/reading", {"seq": "three"}),
        (f"{lab}/d/reading", {"seq": 4, "t": 7}),
        (f"{lab}/e/reading", b"\xff\xfe"),
        (f"{lab}/f/reading", {"seq": 99999999999}),
        (f"{lab}/g/reading", {"seq": 7, "t": {"c": -3}}),
    ])
    changes = connector.read_changes(request)
    assert rows(changes) == [{"device": "a", "seq": 1, "celsius": 1.5},
                             {"device": "g", "seq": 7, "celsius": -3.0}]
    reasons = {letter.origin["topic"].split("/")[1]: letter.reason
               for letter in changes.dead_letters}
    assert sorted(reasons) == ["b", "c", "d", "e", "f"]
    assert "not JSON" in reasons["b"]
    assert "'seq'" in reasons["c"] and "three" in reasons["c"]
    assert "payload.t is an integer, not an object" in reasons["d"]
    assert "not UTF-8" in reasons["e"]
    assert "'seq'" in reasons["f"]
    assert any("5 of 7 messages do not fit" in w for w in changes.warnings)
    assert changes.dead_letters[0].payload == b"not json {"
    changes.acknowledge()
    changes.close()


def test_a_missing_key_is_a_dead_letter_not_a_row(broker: int) -> None:
    connector, request = source(broker, topic=unique("plain") + "/#",
                                fields={"device": "payload.id"})
    lab = base(connector)
    connector.columns(request.dataset, request.spec)
    publish_mqtt(broker, [(f"{lab}/x", {"seq": 1}), (f"{lab}/y", {"id": "k", "seq": 2})])
    changes = connector.read_changes(request)
    assert rows(changes) == [{"device": "k", "seq": 2, "celsius": None}]
    assert "primary key" in changes.dead_letters[0].reason
    changes.acknowledge()
    changes.close()


def test_the_batch_caps_a_run_and_the_rest_waits(broker: int) -> None:
    connector, request = source(broker, batch={"seconds": 30, "rows": 40})
    lab = base(connector)
    connector.columns(request.dataset, request.spec)
    publish_mqtt(broker, [(f"{lab}/d{n}/reading", {"seq": n}) for n in range(100)])
    seen: list[int] = []
    for expected in (40, 40, 20):
        changes = connector.read_changes(request)
        got = rows(changes)
        assert len(got) == expected
        seen.extend(r["seq"] for r in got)
        changes.acknowledge()
        changes.close()
    assert seen == list(range(100))


def test_a_wrong_password_is_refused_without_showing_it(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = tmp_path / "passwords"
    passwords.write_text("", encoding="utf-8")
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "ferry", "s3cret-right"],
                   check=True, capture_output=True)
    passwords.chmod(0o644)
    extra = f"allow_anonymous false\npassword_file {passwords}\n"
    with own_mosquitto(tmp_path / "broker", extra) as port:
        monkeypatch.setenv("LAB_MQTT", "s3cret-wrong")
        connector, request = source(port, username="ferry", password="${env:LAB_MQTT}")
        with pytest.raises(SourceError) as refused:
            connector.read_changes(request)
        assert "refused" in str(refused.value) and "s3cret" not in str(refused.value)
        monkeypatch.setenv("LAB_MQTT", "s3cret-right")
        lab = base(connector)
        connector.columns(request.dataset, request.spec)
        publish_mqtt(port, [(f"{lab}/a/reading", {"seq": 1})], username="ferry",
                     password="s3cret-right")
        changes = connector.read_changes(request)
        assert rows(changes) == [{"device": "a", "seq": 1, "celsius": None}]
        changes.acknowledge()
        changes.close()


def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    extra = (f"allow_anonymous true\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    with own_mosquitto(tmp_path / "broker", extra) as port:
        connector, request = source(port, scheme="mqtts", ca_file=str(ca))
        lab = base(connector)
        connector.columns(request.dataset, request.spec)
        publish_mqtt(port, [(f"{lab}/a/reading", {"seq": 1})], ca_file=ca)
        changes = connector.read_changes(request)
        assert rows(changes) == [{"device": "a", "seq": 1, "celsius": None}]
        changes.acknowledge()
        changes.close()
        untrusted, _ = source(port, scheme="mqtts")  # the system's CAs do not know it
        with pytest.raises(SourceError, match="TLS failed"):
            untrusted.columns(request.dataset, request.spec)


def test_an_unreachable_broker_is_transient(tmp_path: Path) -> None:
    with own_mosquitto(tmp_path / "broker") as port:
        pass  # stopped: nothing listens there now
    connector, request = source(port)
    with pytest.raises(TransientError, match="cannot be reached"):
        connector.read_changes(request)


def test_the_shared_broker_keeps_a_session_between_runs() -> None:
    require_service("mosquitto")
    connector, request = source(1883)
    lab = base(connector)
    client_id = f"{connector.spec.client_id}-{request.dataset}"
    try:
        connector.columns(request.dataset, request.spec)
        publish_mqtt(1883, [(f"{lab}/a/reading", {"seq": n}) for n in range(50)])
        changes = connector.read_changes(request)
        assert rows(changes) == [{"device": "a", "seq": 49, "celsius": None}]
        changes.acknowledge()
        changes.close()
    finally:
        end_mqtt_session(1883, client_id)


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ferry test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    for path in paths:
        path.chmod(0o644)
    return paths
