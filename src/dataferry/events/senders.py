"""Sending CloudEvents: HTTP webhooks (structured JSON mode, signed) and NATS JetStream.

A send raises ``SendError`` with a message safe to store and show (no secret in it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence

import httpx

from dataferry.secrets import Secret, redact

SIGNATURE_HEADER = "X-Ferry-Signature"
TIMEOUT_SECONDS = 10.0


class SendError(Exception):
    """A target did not take an event; the message says why (secrets redacted)."""


def signature(secret: Secret, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of the request body under the webhook's secret."""
    return "sha256=" + hmac.new(secret.reveal().encode(), body, hashlib.sha256).hexdigest()


def post_webhook(client: httpx.Client, url: str, body: bytes, secret: Secret | None,
                 kind: str = "cloudevents") -> None:
    """POST one event; anything but a 2xx answer is a ``SendError``.

    ``kind`` ``cloudevents``: a CloudEvent in structured JSON mode, signed with the
    secret; ``openlineage``: an OpenLineage event, the secret as a bearer API key.
    """
    if kind == "openlineage":
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret.reveal()}"
    else:
        headers = {"Content-Type": "application/cloudevents+json; charset=utf-8"}
        if secret is not None:
            headers[SIGNATURE_HEADER] = signature(secret, body)
    try:
        answer = client.post(url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        raise SendError(redact(f"{type(error).__name__}: {error}", secret)) from None
    if not answer.is_success:
        raise SendError(f"HTTP {answer.status_code} {answer.reason_phrase}".strip())


def publish_nats(server: str, subject: str,
                 messages: Sequence[tuple[str, bytes]]) -> tuple[int, str | None]:
    """Publish ``(event id, body)`` messages to a JetStream subject, in order: how many
    the stream acknowledged, and why it stopped (None: all of them went).

    The event id goes in ``Nats-Msg-Id``, so JetStream drops a message sent twice (after
    a retry) within its duplicate window.
    """
    return asyncio.run(_publish(server, subject, messages))


async def _publish(server: str, subject: str,
                   messages: Sequence[tuple[str, bytes]]) -> tuple[int, str | None]:
    import nats
    from nats.errors import Error as NatsError
    from nats.js.errors import NoStreamResponseError

    failures: list[Exception] = []

    async def quiet(error: Exception) -> None:
        """nats-py would log each failed attempt with a traceback; the caller reports it."""
        failures.append(error)

    try:
        connection = await nats.connect(server, connect_timeout=TIMEOUT_SECONDS,
                                        allow_reconnect=False, max_reconnect_attempts=1,
                                        reconnect_time_wait=0.5,
                                        error_cb=quiet)
    except (TimeoutError, OSError, NatsError) as error:
        cause = failures[-1] if failures else error  # why the last attempt failed
        return 0, f"cannot reach NATS at {server}: {cause or type(cause).__name__}"
    done = 0
    try:
        stream = connection.jetstream(timeout=TIMEOUT_SECONDS)
        for event_id, body in messages:
            try:
                await stream.publish(subject, body, headers={
                    "Nats-Msg-Id": event_id, "Content-Type": "application/cloudevents+json"})
            except NoStreamResponseError:
                return done, (f"no JetStream stream takes subject {subject!r} on {server}: "
                              f"create one (nats stream add --subjects '{subject}')")
            except (TimeoutError, NatsError) as error:
                return done, f"NATS {server}: {error or type(error).__name__}"
            done += 1
        return done, None
    finally:
        await connection.close()
