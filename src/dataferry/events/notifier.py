"""Sends the outbox's events to the consumers' ``notify`` targets: at least once, in
order per target, each target on its own.

Each target (one webhook or NATS subject of one consumer) keeps its place in the outbox
in ``notify_progress``. A pass takes the target's lease (so two schedulers on one
database do not both send), reads the events after its place, sends those the consumer
hears about (``routing``), and moves its place past what went. A target that fails keeps
its place and waits before it tries again (5 s, doubling up to 10 minutes); the others
go on. A new target starts with the events that come after it appears, not the history.
``stop`` ends a pass at the next event (the server is stopping): the rest waits, in place.

An event number missing below a later one is a transaction that has not committed yet
(PostgreSQL hands out numbers at insert): a target does not move past it for
``patience`` seconds, so a late event is sent rather than skipped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta

import httpx

from dataferry.engine.context import RunContext
from dataferry.errors import FerryError
from dataferry.events.cloudevents import event_json
from dataferry.events.lineage import LineageNames, openlineage_json
from dataferry.events.routing import NotifyTarget, notify_targets
from dataferry.events.senders import post_webhook, publish_nats
from dataferry.metadata import (
    Clock,
    Event,
    Leases,
    NotifyProgress,
    Outbox,
    Progress,
    RunHistory,
    utcnow,
    worker_name,
)
from dataferry.model.spec import NatsNotify, WebhookNotify
from dataferry.secrets import resolve

BATCH = 200
FIRST_RETRY = timedelta(seconds=5)
LAST_RETRY = timedelta(minutes=10)
LEASE_SECONDS = 120.0
STOPPED = "stopped: the process is shutting down"


class Notifier:
    """One process's sender of events to every notify target of the model."""

    def __init__(self, context: RunContext, *, now: Clock = utcnow, holder: str | None = None,
                 patience: float = 60.0, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        self.targets = notify_targets(context.index)
        self.ecosystem = context.ecosystem.ecosystem
        self.context = context
        self.runs = RunHistory(context.metadata)
        self.outbox = Outbox(context.metadata)
        self.progress = NotifyProgress(context.metadata, now)
        self.leases = Leases(context.metadata, now=now)
        self.now = now
        self.holder = holder or worker_name()
        self.patience = patience
        self.monotonic = monotonic
        self._gaps: dict[tuple[str, int], float] = {}  # (target, missing seq) -> first seen
        self._http: httpx.Client | None = None
        self._turn = threading.Lock()
        self._stopping = threading.Event()

    def run_once(self) -> list[Progress]:
        """One pass over every target; what each target's progress is after it. Passes
        of one process take turns (a lease is per process, so it would let both in)."""
        with self._turn:
            return [found for target in self.targets
                    if not self._stopping.is_set()
                    and (found := self._serve(target)) is not None]

    def stop(self) -> None:
        """End the pass under way at the next event, and make later ones do nothing."""
        self._stopping.set()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def _serve(self, target: NotifyTarget) -> Progress | None:
        lease = f"notify:{target.key}"[:400]
        if not self.leases.acquire(lease, self.holder, LEASE_SECONDS):
            return None  # another process serves it now
        try:
            progress = self.progress.get(target.key)
            if progress is None:
                progress = Progress(target.key, self.outbox.last_seq())
                self.progress.save(progress)
            if progress.retry_at is not None and progress.retry_at > self.now():
                return progress
            events = self._in_order(target, self.outbox.after(progress.position, BATCH),
                                    progress.position)
            if not events:
                return progress
            wanted = [event for event in events if target.wants(event)]
            sent, error = self._send(target, wanted)
            if error == STOPPED:  # not the target's fault: the rest goes next time
                progress = replace(progress, position=wanted[sent].seq - 1,
                                   sent=progress.sent + sent)
            elif error is None:
                progress = replace(progress, position=events[-1].seq,
                                   sent=progress.sent + sent, failures=0, retry_at=None,
                                   last_error=None)
            else:
                failures = progress.failures + 1
                wait = min(FIRST_RETRY * 2 ** min(failures - 1, 16), LAST_RETRY)
                progress = replace(progress, position=wanted[sent].seq - 1,
                                   sent=progress.sent + sent, failures=failures,
                                   retry_at=self.now() + wait, last_error=error)
            self.progress.save(progress)
            return progress
        finally:
            self.leases.release(lease, self.holder)

    def _in_order(self, target: NotifyTarget, events: list[Event], position: int
                  ) -> list[Event]:
        """``events`` up to the first missing number that may still commit."""
        out: list[Event] = []
        expected = position + 1
        for event in events:
            if event.seq != expected:
                first_seen = self._gaps.setdefault((target.key, expected), self.monotonic())
                if self.monotonic() - first_seen < self.patience:
                    break
                del self._gaps[(target.key, expected)]  # given up: a rollback
            out.append(event)
            expected = event.seq + 1
        return out

    def _send(self, target: NotifyTarget, events: Sequence[Event]) -> tuple[int, str | None]:
        """Send ``events`` in order: how many went, and the error that stopped it."""
        if not events:
            return 0, None
        spec = target.target
        if isinstance(spec, NatsNotify):
            return publish_nats(spec.server, spec.nats,
                                [(event.id, event_json(event)) for event in events])
        try:
            if isinstance(spec, WebhookNotify):
                secret = resolve(spec.secret, f"consumer {target.consumer}: webhook secret")
                bodies = [[event_json(event)] for event in events]
                kind = "cloudevents"
            else:
                secret = resolve(spec.api_key, "openlineage: api_key")
                names = LineageNames(self.context.index, self.context.root,
                                     spec.namespace or self.ecosystem)
                started = self.runs.start_times([int(e.data["run"]) for e in events])
                # An OpenLineage run event is a START and its end, sent (and resent) together.
                bodies = [[body.encode() for body in openlineage_json(
                    event, names, started.get(int(event.data["run"])))] for event in events]
                kind = "openlineage"
        except FerryError as error:  # a secret not set, openlineage-python missing
            return 0, str(error)
        if self._http is None:
            self._http = httpx.Client()
        for done, sends in enumerate(bodies):
            if self._stopping.is_set():
                return done, STOPPED
            for body in sends:
                try:
                    post_webhook(self._http, target.address, body, secret, kind)
                except Exception as error:
                    return done, str(error)
        return len(events), None
