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
the client goes away.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from dataferry.engine.context import RunContext
from dataferry.events import event_json
from dataferry.metadata import EventCursor, Outbox
from dataferry.server.auth.dependency import CurrentPrincipal
from dataferry.server.errors import MAX_ID

router = APIRouter()
POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
_SEQ = re.compile(r"[0-9]{1,12}")  # ASCII digits: str.isdigit() takes "²" too


@router.get("/events", response_class=StreamingResponse)
async def events(request: Request, _: CurrentPrincipal,
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

    async def stream() -> AsyncIterator[bytes]:
        deadline = time.monotonic() + timeout if timeout is not None else None
        quiet_since = time.monotonic()
        yield b"retry: 2000\n\n"
        while deadline is None or time.monotonic() < deadline:
            if await request.is_disconnected():
                return
            for event in await asyncio.to_thread(cursor.poll):
                yield _frame(str(event.seq), event_json(event))
                quiet_since = time.monotonic()
            if time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _frame(event_id: str, data: bytes) -> bytes:
    return b"id: " + event_id.encode() + b"\nevent: cloudevent\ndata: " + data + b"\n\n"
