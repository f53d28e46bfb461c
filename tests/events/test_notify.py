"""Events reach the consumers' notify targets: a real webhook on loopback (signed,
retried until it answers, nothing lost) and a real NATS JetStream stream."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from dataferry.broker.graph import build_graph, select
from dataferry.broker.runner import run_jobs
from dataferry.engine.context import RunContext
from dataferry.events.notifier import Notifier
from dataferry.events.senders import SendError, post_webhook
from dataferry.metadata import Event, NotifyProgress, Progress, open_metadata
from dataferry.model.load import load_model
from dataferry.secrets import Secret
from tests.broker.small_model import TEAM, make_shop
from tests.conftest import require_service, write_files
from tests.connectors.pg_helpers import temporary_database

SECRET = "hook-secret-5f1c"
OTHER = """\
team: crm
zone: eu
owners: [bob@acme.example]
consumers:
  app:
    sink: {kind: sqlite, path: out/app.db}
    datasets: [shop.totals]
    notify:
      - webhook: {url}/crm
"""


class Receiver:
    """A webhook endpoint on loopback that records what it gets and answers ``status``."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.on_post: Callable[[], None] = lambda: None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.status == 200:
                    receiver.received.append((self.path, dict(self.headers), body))
                receiver.on_post()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, path: str = "/shop") -> list[dict[str, Any]]:
        return [json.loads(body) for p, _, body in self.received if p == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.at


def shop_with_notify(root: Path, notify: str, other: str | None = None,
                     metadata: str | None = None, ecosystem: str = "") -> RunContext:
    make_shop(root)
    team = TEAM.replace("      - {ref: shop.totals}\n", "      - {ref: shop.totals}\n" + notify)
    files = {"teams/shop/shop.yaml": team}
    if metadata is not None:
        ecosystem += f"metadata: {metadata}\n"
    if ecosystem:
        files["ferry.yaml"] = "ecosystem: acme\nzones: {eu: {}}\n" + ecosystem
    if other is not None:
        files["teams/crm/crm.yaml"] = other
    write_files(root, files)
    return RunContext.from_loaded(load_model(root))


def change_a_row(root: Path, amount: str) -> None:
    with sqlite3.connect(root / "shop.db") as db:
        db.execute("update orders set amount = ?, updated_at = ? where id = 1",
                   (amount, datetime.now(UTC).isoformat()))
    db.close()


def by_consumer(progress: list[Progress]) -> dict[str, Progress]:
    return {p.target.split()[0]: p for p in progress}


def run_all(context: RunContext) -> None:
    graph = build_graph(context.index)
    results = run_jobs(context, select(graph, context.index, [], downstream=False))
    assert all(r.status in ("succeeded", "unchanged") for r in results), results


def test_a_webhook_gets_what_its_consumer_receives_signed_and_retried_until_it_answers(
        tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_HOOK_SECRET", SECRET)
    notify = ("    notify:\n      - webhook: " + receiver.url + "/shop\n"
              "        secret: ${env:SHOP_HOOK_SECRET}\n")
    context = shop_with_notify(tmp_path / "model", notify, OTHER.replace("{url}", receiver.url))
    clock = Clock()
    notifier = Notifier(context, now=clock)
    assert [p.position for p in notifier.run_once()] == [0, 0]  # new targets start now
    run_all(context)
    notifier.run_once()

    got = receiver.events("/shop")
    kinds = [(e["type"], e["subject"]) for e in got]
    assert ("io.dataferry.dataset.version.published", "shop.orders") in kinds
    assert ("io.dataferry.run.succeeded", "ingest:shop.orders") in kinds
    assert ("io.dataferry.run.succeeded", "deliver:shop.mirror:orders") in kinds
    assert all(e["specversion"] == "1.0" for e in got)
    for _, headers, body in receiver.received:
        if _ == "/shop":
            expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Ferry-Signature"] == f"sha256={expected}"
            assert headers["Content-Type"].startswith("application/cloudevents+json")
    # crm.app receives shop.totals only: not the orders version, nor shop's deliveries.
    crm = [(e["type"], e["subject"]) for e in receiver.events("/crm")]
    assert ("io.dataferry.dataset.version.published", "shop.totals") in crm
    assert ("io.dataferry.run.succeeded", "transform:shop.totals") in crm
    assert all(s not in ("shop.orders", "deliver:shop.mirror:orders") for _, s in crm)
    assert all("X-Ferry-Signature" not in headers  # crm's webhook has no secret
               for path, headers, _ in receiver.received if path == "/crm")

    # The endpoint goes down: the events wait, and the target backs off.
    receiver.status = 503
    before = len(receiver.events("/shop"))
    change_a_row(tmp_path / "model", "7.00")
    run_all(context)
    failed = by_consumer(notifier.run_once())["shop.mirror"]
    assert failed.failures == 1 and failed.last_error == "HTTP 503 Service Unavailable"
    assert failed.retry_at == clock.at + timedelta(seconds=5)
    receiver.status = 200
    assert len(receiver.events("/shop")) == before
    notifier.run_once()  # too early: still waiting
    assert len(receiver.events("/shop")) == before
    clock.at += timedelta(seconds=6)
    recovered = by_consumer(notifier.run_once())["shop.mirror"]
    assert recovered.failures == 0 and recovered.last_error is None
    late = receiver.events("/shop")[before:]
    assert {e["subject"] for e in late} >= {"ingest:shop.orders", "deliver:shop.mirror:orders"}
    seqs = [e["id"] for e in receiver.events("/shop")]
    assert len(seqs) == len(set(seqs))  # each event once (here: no retry after a 2xx)
    notifier.close()
    context.close()


def test_a_stopped_notifier_ends_its_pass_at_the_next_event_and_loses_none(
        tmp_path: Path, receiver: Receiver) -> None:
    """What ``ferry serve`` does on SIGTERM: the pass stops after the event being sent,
    the target keeps its place without counting a failure, the next process sends the rest."""
    context = shop_with_notify(tmp_path / "model",
                               "    notify:\n      - webhook: " + receiver.url + "/shop\n")
    notifier = Notifier(context)
    notifier.run_once()
    run_all(context)
    receiver.on_post = notifier.stop  # the process is told to stop during the first send
    (stopped,) = notifier.run_once()
    assert len(receiver.events()) == 1 and stopped.sent == 1
    assert stopped.failures == 0 and stopped.last_error is None and stopped.retry_at is None
    assert notifier.run_once() == []  # stopped: later passes do nothing
    notifier.close()
    receiver.on_post = lambda: None
    after = Notifier(context)
    (done,) = after.run_once()
    assert done.last_error is None and done.sent > 1
    ids = [e["id"] for e in receiver.events()]
    assert len(ids) == len(set(ids)) == done.sent  # each event once, none lost
    after.close()
    context.close()


def test_a_missing_secret_is_an_error_that_names_it_not_a_crash(
        tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_HOOK_SECRET", raising=False)
    notify = ("    notify:\n      - webhook: " + receiver.url + "/shop\n"
              "        secret: ${env:NO_SUCH_HOOK_SECRET}\n")
    context = shop_with_notify(tmp_path / "model", notify)
    notifier = Notifier(context)
    notifier.run_once()
    run_all(context)
    (progress,) = notifier.run_once()
    assert progress.failures == 1 and "NO_SUCH_HOOK_SECRET is not set" in (
        progress.last_error or "")
    assert receiver.received == []
    notifier.close()
    context.close()


def test_events_reach_a_nats_jetstream_stream(tmp_path: Path) -> None:
    require_service("nats")
    import nats

    subject = f"ferry.test.{uuid.uuid4().hex[:8]}"
    stream = f"FERRY_{uuid.uuid4().hex[:8]}"
    notify = f"    notify:\n      - nats: {subject}\n"
    context = shop_with_notify(tmp_path / "model", notify)
    notifier = Notifier(context)
    notifier.run_once()
    run_all(context)
    (no_stream,) = notifier.run_once()  # nobody made a stream for the subject yet
    assert no_stream.failures == 1 and "nats stream add" in (no_stream.last_error or "")

    async def with_stream() -> list[tuple[str, dict[str, Any]]]:
        connection = await nats.connect("nats://127.0.0.1:4222")
        js = connection.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        try:
            notifier.progress.save(replace(no_stream, retry_at=None))  # retry now
            await asyncio.to_thread(notifier.run_once)
            pull = await js.pull_subscribe(subject, durable=None)
            messages = await pull.fetch(50, timeout=5)
            return [(m.headers["Nats-Msg-Id"], json.loads(m.data)) for m in messages]
        finally:
            await js.delete_stream(stream)
            await connection.close()

    got = asyncio.run(with_stream())
    assert ("io.dataferry.dataset.version.published", "shop.orders") in [
        (e["type"], e["subject"]) for _, e in got]
    assert all(msg_id == e["id"] for msg_id, e in got)
    notifier.close()
    context.close()


def test_who_hears_what(tmp_path: Path) -> None:
    notify = "    notify:\n      - nats: shop.events\n"
    context = shop_with_notify(tmp_path / "model", notify,
                               OTHER.replace("{url}", "http://127.0.0.1:9"))
    targets = {t.consumer: t for t in Notifier(context).targets}
    shop, crm = targets["shop.mirror"], targets["crm.app"]

    def event(type_: str, subject: str, **data: Any) -> Event:
        return Event(1, "e", f"io.dataferry.{type_}", "/x", subject, datetime.now(UTC), data)

    orders = event("dataset.version.published", "shop.orders", ref="shop.orders")
    assert shop.wants(orders) and not crm.wants(orders)
    totals = event("dataset.version.published", "shop.totals", ref="shop.totals")
    assert shop.wants(totals) and crm.wants(totals)
    ingest_failed = event("run.failed", "ingest:shop.orders")
    assert shop.wants(ingest_failed) and not crm.wants(ingest_failed)
    transform_ok = event("run.succeeded", "transform:shop.totals")
    assert shop.wants(transform_ok) and crm.wants(transform_ok)
    own = event("run.failed", "deliver:crm.app:totals")
    assert crm.wants(own) and not shop.wants(own)
    stale = event("dataset.stale", "deliver:crm.app:totals", consumer="crm.app",
                  ref="shop.totals")
    assert crm.wants(stale) and not shop.wants(stale)
    assert not crm.wants(event("run.failed", "deliver:crm.application:x"))  # a prefix only
    context.close()


def test_ferry_up_says_when_a_target_fails_and_when_it_delivers_again(
        tmp_path: Path, receiver: Receiver, ferry: Callable[..., Any]) -> None:
    notify = "    notify:\n      - webhook: " + receiver.url + "/shop\n"
    shop_with_notify(tmp_path / "model", notify).close()
    root = tmp_path / "model"
    assert ferry("up", "--once", "--model", root).code == 0  # the target starts here
    receiver.status = 500
    change_a_row(root, "8.00")
    assert ferry("run", "--model", root).code == 0
    out = ferry("up", "--once", "--model", root).out
    assert f"notify shop.mirror webhook {receiver.url}/shop: FAILED (HTTP 500" in out
    receiver.status = 200
    with open_metadata(f"sqlite:///{root / '.ferry' / 'ferry.db'}") as db:
        progress = NotifyProgress(db)
        (failing,) = progress.all()
        progress.save(replace(failing, retry_at=None))  # its wait is over
    out = ferry("up", "--once", "--model", root).out
    assert f"notify shop.mirror webhook {receiver.url}/shop: failing (HTTP 500" in out
    assert f"notify shop.mirror webhook {receiver.url}/shop: delivering again" in out
    assert {e["subject"] for e in receiver.events("/shop")} >= {"ingest:shop.orders"}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_schedulers_on_one_database_send_each_event_once(
        tmp_path: Path, receiver: Receiver, backend: str) -> None:
    notify = "    notify:\n      - webhook: " + receiver.url + "/shop\n"
    if backend == "postgres":
        require_service("postgres")
        with temporary_database() as url:
            _two_schedulers(tmp_path, receiver, shop_with_notify(tmp_path / "model", notify,
                                                                 metadata=url))
    else:
        _two_schedulers(tmp_path, receiver, shop_with_notify(tmp_path / "model", notify))


def _two_schedulers(tmp_path: Path, receiver: Receiver, context: RunContext) -> None:
    first = Notifier(context, holder="host-a:1")
    second = Notifier(context, holder="host-b:2")
    first.run_once()
    run_all(context)
    run_all(context)
    slow = threading.Event()
    original = receiver.server.RequestHandlerClass.do_POST

    def slowly(handler: Any) -> None:  # hold the first sender inside its pass
        slow.wait(0.2)
        original(handler)

    receiver.server.RequestHandlerClass.do_POST = slowly  # type: ignore[method-assign]
    passes = [threading.Thread(target=n.run_once) for n in (first, second, first, second)]
    for thread in passes:
        thread.start()
    for thread in passes:
        thread.join()
    first.run_once()
    second.run_once()
    ids = [e["id"] for e in receiver.events("/shop")]
    assert ids and len(ids) == len(set(ids))
    assert {"ingest:shop.orders", "deliver:shop.mirror:orders"} <= {
        e["subject"] for e in receiver.events("/shop")}
    for notifier in (first, second):
        notifier.close()
    context.close()


def test_openlineage_gets_every_run_with_its_inputs_and_outputs(
        tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEAGE_KEY", "lineage-key-93")
    context = shop_with_notify(tmp_path / "model", "", ecosystem=(
        f"openlineage: {{url: '{receiver.url}', api_key: '${{env:LINEAGE_KEY}}'}}\n"))
    notifier = Notifier(context)
    notifier.run_once()
    run_all(context)
    (progress,) = notifier.run_once()
    assert progress.last_error is None and progress.sent >= 4
    posted = [(headers, json.loads(body)) for path, headers, body in receiver.received
              if path == "/api/v1/lineage"]
    assert all(h["Authorization"] == "Bearer lineage-key-93" for h, _ in posted)
    events = {e["job"]["name"]: e for _, e in posted}
    transform = events["transform:shop.totals"]
    assert transform["eventType"] == "COMPLETE" and transform["producer"]
    assert transform["job"]["namespace"] == "acme"
    assert [(d["namespace"], d["name"]) for d in transform["inputs"]] == [
        ("dataferry://acme", "shop.orders")]
    assert [d["name"] for d in transform["outputs"]] == ["shop.totals"]
    assert transform["outputs"][0]["facets"]["version"]["datasetVersion"] == "1"
    assert uuid.UUID(transform["run"]["runId"]).version == 5
    assert "schemaURL" in transform and transform["eventTime"].startswith("20")
    assert [d["name"] for d in events["deliver:shop.mirror:orders"]["inputs"]] == ["shop.orders"]

    (tmp_path / "model" / "shop.db").rename(tmp_path / "model" / "gone.db")
    graph = build_graph(context.index)
    run_jobs(context, select(graph, context.index, ["shop.orders"], downstream=False))
    notifier.run_once()
    failed = [json.loads(body) for path, _, body in receiver.received
              if path == "/api/v1/lineage"][-1]
    assert failed["eventType"] == "FAIL" and failed["job"]["name"] == "ingest:shop.orders"
    assert "shop.db" in failed["run"]["facets"]["errorMessage"]["message"]
    notifier.close()
    context.close()


def test_a_target_failing_for_days_waits_ten_minutes_between_tries(
        tmp_path: Path, receiver: Receiver) -> None:
    notify = "    notify:\n      - webhook: " + receiver.url + "/shop\n"
    context = shop_with_notify(tmp_path / "model", notify)
    clock = Clock()
    notifier = Notifier(context, now=clock)
    (progress,) = notifier.run_once()
    notifier.progress.save(replace(progress, failures=5_000))  # down for a long time
    receiver.status = 500
    run_all(context)
    (failing,) = notifier.run_once()
    assert failing.failures == 5_001 and failing.retry_at == clock.at + timedelta(minutes=10)
    notifier.close()
    context.close()


def test_an_unreachable_nats_server_is_a_quick_clear_error(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    notify = "    notify:\n      - {nats: shop.events, server: 'nats://127.0.0.1:1'}\n"
    context = shop_with_notify(tmp_path / "model", notify)
    notifier = Notifier(context)
    notifier.run_once()
    run_all(context)
    started = time.monotonic()
    (progress,) = notifier.run_once()
    assert time.monotonic() - started < 5
    assert progress.failures == 1 and progress.position == 0
    error = progress.last_error or ""
    assert error.startswith("cannot reach NATS at nats://127.0.0.1:1: ")
    assert "Connect call failed" in error  # the cause, not just "no servers available"
    assert "Traceback" not in capfd.readouterr().err
    notifier.close()
    context.close()


@pytest.mark.parametrize(("url", "says"), [
    ("hooks.example/crm", "missing an 'http://' or 'https://' protocol"),
    ("ftp://hooks.example/crm", "unsupported protocol"),
    ("http://127.0.0.1:9/crm", "ConnectError"),
])
def test_a_bad_webhook_url_is_an_error_that_says_why(url: str, says: str) -> None:
    with httpx.Client() as client, pytest.raises(SendError, match=re.escape(says)):
        post_webhook(client, url, b"{}", Secret("hook-secret-1", "${env:X}"))
