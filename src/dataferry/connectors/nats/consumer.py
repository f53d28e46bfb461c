"""One dataset's durable JetStream pull consumer: where a run starts, reading, acking.

The consumer (``<durable>_<team>_<dataset>``, explicit acks, no limit on messages pending
acknowledgement) remembers what was acknowledged; the stream keeps the messages. The
position the head's manifest recorded (the last stream sequence in the store) is the
truth: a run that finds the consumer holding messages unacknowledged (a run died, or its
version was not published) or following another subject re-creates it to start right
after that position, so nothing is skipped; a message at or before the position (its
version was published, its ack lost) is skipped, so nothing is doubled. Messages are
read in stream order, a redelivered one only once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoServersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from dataferry.errors import SourceError, TransientError
from dataferry.secrets import Secret, redact

__all__ = ["ConsumerOptions", "Durable", "Fetched"]

ACK_WAIT_SECONDS = 600.0
"""How long the server waits for a run's acks before sending messages again (a run holds
them until its version is signed; a re-send within a run is read once)."""
FETCH_MAX = 500


@dataclass(frozen=True)
class ConsumerOptions:
    """Where to connect and which consumer to read (secrets resolved)."""

    url: str
    subject: str
    durable: str
    stream: str | None = None
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class Fetched:
    """One message read, by stream sequence."""

    sequence: int
    subject: str
    payload: bytes
    message: Msg


class Durable:
    """A connection to the server and the dataset's consumer on it (``open`` first)."""

    def __init__(self, options: ConsumerOptions, what: str) -> None:
        self.options, self.what = options, what
        self.connection: Client | None = None
        self.stream = options.stream or ""
        self.recreated = False

    def _show(self, text: str) -> str:
        return redact(text, self.options.password, self.options.token)

    async def open(self) -> JetStreamContext:
        """Connect and find the stream (``stream:`` or the one holding the subject)."""
        options = self.options
        where = f"{self.what}: NATS server {self._show(options.url)}"
        failures: list[Exception] = []

        async def quiet(error: Exception) -> None:
            """nats-py would log each failed attempt with a traceback; we report the last."""
            failures.append(error)

        try:
            self.connection = await nats.connect(
                options.url, user=options.username,
                password=options.password.reveal() if options.password else None,
                token=options.token.reveal() if options.token else None,
                connect_timeout=options.timeout, allow_reconnect=False,
                max_reconnect_attempts=1, reconnect_time_wait=0.5, error_cb=quiet)
        except (TimeoutError, NoServersError, OSError) as exc:
            cause = failures[-1] if failures else exc
            if "authorization" in str(cause).lower():
                raise SourceError(f"{where} refused the connection ({self._show(str(cause))});"
                                  " check username, password or token", public=True) from None
            raise TransientError(f"{where} cannot be reached "
                                 f"({self._show(str(cause) or type(cause).__name__)})",
                                 public=True) from None
        except NatsError as exc:
            raise SourceError(f"{where} refused the connection ({self._show(str(exc))}); "
                              "check username, password or token", public=True) from None
        js = self.connection.jetstream(timeout=options.timeout)
        if not options.stream:
            try:
                self.stream = await js.find_stream_name_by_subject(options.subject)
            except NotFoundError:
                raise SourceError(f"{self.what}: no JetStream stream holds subject "
                                  f"{options.subject!r}; create one (nats stream add) or name "
                                  "it with stream:", public=True) from None
        else:
            try:
                await js.stream_info(options.stream)
            except NotFoundError:
                raise SourceError(f"{self.what}: JetStream stream {options.stream!r} does "
                                  "not exist on the server", public=True) from None
        return js

    async def prepare(self, js: JetStreamContext,
                      position: int | None) -> JetStreamContext.PullSubscription:
        """The consumer, created or re-created to start after ``position`` when needed."""
        options = self.options
        config = ConsumerConfig(
            durable_name=options.durable, filter_subject=options.subject,
            ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_SECONDS, max_ack_pending=-1,
            max_deliver=-1,
            deliver_policy=DeliverPolicy.ALL if position is None
            else DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=None if position is None else position + 1)
        try:
            info = await js.consumer_info(self.stream, options.durable)
        except NotFoundError:
            info = None
        if (info is not None and (info.num_ack_pending or 0) > 0) or (
                info is not None and info.config.filter_subject != options.subject):
            await js.delete_consumer(self.stream, options.durable)
            info = None
            self.recreated = True
        if info is None:
            await js.add_consumer(self.stream, config)
        return await js.pull_subscribe_bind(durable=options.durable, stream=self.stream)

    async def fetch(self, subscription: JetStreamContext.PullSubscription, *, rows: int,
                    seconds: float, quiet: float) -> list[Fetched]:
        """Messages in stream order until none are pending, ``rows`` are in, ``seconds``
        passed, or none came for ``quiet`` seconds; a re-sent message once."""
        seen: dict[int, Fetched] = {}
        deadline = time.monotonic() + seconds
        while len(seen) < rows:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                messages = await subscription.fetch(min(FETCH_MAX, rows - len(seen)),
                                                    timeout=max(0.1, min(quiet, left)))
            except (TimeoutError, NatsTimeout):
                break
            pending: Any = None
            for message in messages:
                meta = message.metadata
                seen.setdefault(meta.sequence.stream,
                                Fetched(meta.sequence.stream, message.subject, message.data,
                                        message))
                pending = meta.num_pending
            if pending == 0:
                break
        return [seen[sequence] for sequence in sorted(seen)]

    async def acknowledge(self, fetched: list[Fetched]) -> None:
        for item in fetched:
            await item.message.ack()
        if self.connection is not None:
            await self.connection.flush(timeout=int(self.options.timeout))

    async def close(self) -> None:
        if self.connection is not None and not self.connection.is_closed:
            await self.connection.close()
        self.connection = None
