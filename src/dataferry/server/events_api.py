"""``GET /api/v1/events``: what happens, as a Server-Sent Events stream of CloudEvents 1.0.

The events come from the metadata DB's outbox (``dataferry.metadata.outbox``), where each
is written with the change it announces, whichever process made it:

- ``io.dataferry.run.succeeded`` / ``io.dataferry.run.failed`` for each finished run
  (source ``/runs/<id>``, subject the job; a skipped run counts as failed);
- ``io.dataferry.dataset.version.published`` for each version a run published (source
  ``/datasets/<ref>``, data with ref, version, rows and manifest hash);
- ``io.dataferry.dataset.stale`` when a delivery's data gets older than its consumer's
  ``freshness`` (source ``/datasets/<ref>``, subject the delivery job).

Each SSE frame's ``id`` is the event's place in the outbox, so a client that reconnects
with ``Last-Event-ID`` continues where it stopped (at least once: CloudEvent ids are
stable, for de-duplicating). Events carry catalog metadata only (names, counts, hashes,
a run's public error summary, which holds neither secrets nor row values), which every
logged-in user may see. The stream
polls the outbox; ``timeout`` ends it (for scripts and tests), otherwise it runs until
the client goes away, its token expires or the server stops (``Shutdown.closing``).

A stream outlives the check made when it opened, so it checks its token again every
``RECHECK_SECONDS`` and ends when the token was revoked or expired or its user
disabled: revoking a token or disabling a user cuts off what they were watching too.
Each open stream polls through the thread pool, so one user may hold at most
``STREAMS_PER_USER`` at once (429 beyond), and the process ``STREAMS_PER_PROCESS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from dataferry.engine.context import RunContext
from dataferry.events import event_json
from dataferry.metadata import EventCursor, Outbox
from dataferry.server.auth.dependency import (
    AuthDependency,
    ReadPrincipal,
    authenticate,
    presented_token,
)
from dataferry.server.errors import MAX_ID, RateLimited

router = APIRouter()
POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
RECHECK_SECONDS = 15.0
"""How often an open stream checks that its token is still live and its user enabled."""
STREAMS_PER_USER = 10
"""Open streams one user may hold in one server process; more get 429. Each stream polls
the outbox through the thread pool, so without a bound one user's loop of reconnects
would take the pool (40 threads) from everyone else."""
STREAMS_PER_PROCESS = 200
_SEQ = re.compile(r"[0-9]{1,12}")  # ASCII digits: str.isdigit() takes "²" too


@router.get("/events", response_class=StreamingResponse)
async def events(request: Request, principal: ReadPrincipal, auth: AuthDependency,
                 last_event_id: Annotated[str | None, Header()] = None,
                 since_start: Annotated[bool, Query(
                     description="Replay every recorded event first")] = False,
                 timeout: Annotated[float | None, Query(gt=0, le=3600)] = None,
                 ) -> StreamingResponse:
    """Server-Sent Events: CloudEvents (structured JSON) of runs, versions, stale data."""
    context: RunContext = request.app.state.context
    outbox = Outbox(context.metadata)
    if _SEQ.fullmatch(last_event_id or "") and int(last_event_id or 0) <= MAX_ID:
        start = int(last_event_id or 0)
    else:  # no id, or one this stream never sent: from now on (or all, since_start)
        start = 0 if since_start else await asyncio.to_thread(outbox.last_seq)
    cursor = EventCursor(outbox, start)
    open_streams = _open_streams(request)
    _refuse_beyond_limits(open_streams, principal.user_id)
    secret = presented_token(request)
    token = (None if principal.token_id is None else
             await asyncio.to_thread(auth.tokens.store.get, principal.token_id))
    lifetime = 0.0 if token is None else (token.expires_at - auth.now()).total_seconds()
    wanted = lifetime if timeout is None else min(timeout, lifetime)

    async def still_allowed() -> bool:  # against the model served now (it may be reloaded)
        index = request.app.state.context.index
        return await asyncio.to_thread(authenticate, auth, secret, index) is not None

    async def stream() -> AsyncIterator[bytes]:
        open_streams[principal.user_id] += 1
        try:
            async for frame in frames():
                yield frame
        finally:
            open_streams[principal.user_id] -= 1

    shutdown = getattr(request.app.state, "shutdown", None)  # None: no lifespan (tests)
    closing = asyncio.Event() if shutdown is None else shutdown.closing

    async def frames() -> AsyncIterator[bytes]:
        deadline = time.monotonic() + wanted  # the timeout, or the token's expiry
        quiet_since = recheck_at = time.monotonic()
        yield b"retry: 2000\n\n"
        while time.monotonic() < deadline:
            if closing.is_set():
                yield b": closed: the server is stopping; reconnect with Last-Event-ID\n\n"
                return
            if await request.is_disconnected():
                return
            if time.monotonic() - recheck_at >= RECHECK_SECONDS:
                if not await still_allowed():
                    yield b": closed: the token was revoked or expired, or its user disabled\n\n"
                    return
                recheck_at = time.monotonic()
            for event in await asyncio.to_thread(cursor.poll):
                yield _frame(str(event.seq), event_json(event))
                quiet_since = time.monotonic()
            if time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            with contextlib.suppress(TimeoutError):  # the poll interval, or the server stops
                await asyncio.wait_for(closing.wait(), POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _open_streams(request: Request) -> Counter[int]:
    """Open streams per user id in this app (only the event loop's thread touches it)."""
    state = request.app.state
    if not hasattr(state, "event_streams"):
        state.event_streams = Counter()
    streams: Counter[int] = state.event_streams
    return streams


def _refuse_beyond_limits(open_streams: Counter[int], user_id: int) -> None:
    if open_streams[user_id] >= STREAMS_PER_USER:
        raise RateLimited(5, f"you have {open_streams[user_id]} event streams open already "
                             f"(at most {STREAMS_PER_USER}): close one, or reconnect with "
                             "Last-Event-ID after it ended")
    if open_streams.total() >= STREAMS_PER_PROCESS:
        raise RateLimited(5, f"the server has {STREAMS_PER_PROCESS} event streams open; "
                             "try again shortly")


def _frame(event_id: str, data: bytes) -> bytes:
    return b"id: " + event_id.encode() + b"\nevent: cloudevent\ndata: " + data + b"\n\n"
