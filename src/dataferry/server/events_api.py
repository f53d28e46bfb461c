"""``GET /api/v1/events``: what happens, as a Server-Sent Events stream of CloudEvents 1.0.

Each finished run is an ``io.dataferry.run.succeeded`` or ``io.dataferry.run.failed``
event (source ``/runs/<id>``), and each version it published an
``io.dataferry.dataset.version.published`` event (source ``/datasets/<ref>``, data with
ref, version, rows and manifest hash). Event ids are stable (``run-<id>``), so a client
that reconnects with ``Last-Event-ID`` continues where it stopped. Events carry catalog
metadata only (names, counts, hashes, error texts, which never hold secrets), which every
logged-in user may see. The stream polls the run history; ``timeout`` ends it (for
scripts and tests), otherwise it runs until the client goes away.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from cloudevents.v1.conversion import to_json
from cloudevents.v1.http import CloudEvent
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from dataferry.engine.context import RunContext
from dataferry.metadata import Run
from dataferry.server.auth.dependency import CurrentPrincipal
from dataferry.server.errors import MAX_ID

router = APIRouter()
POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
SUCCEEDED = ("succeeded", "unchanged")
_RUN_EVENT = re.compile(r"run-([0-9]{1,12})")  # ASCII digits: str.isdigit() takes "²" too


def run_events(context: RunContext, run: Run) -> list[CloudEvent]:
    """The CloudEvents one finished run stands for."""
    status = "succeeded" if run.status in SUCCEEDED else "failed"
    moment = (run.ended_at or run.started_at).isoformat()
    out = [CloudEvent({
        "type": f"io.dataferry.run.{status}", "source": f"/runs/{run.id}",
        "id": f"run-{run.id}", "time": moment, "subject": run.job_id,
        "datacontenttype": "application/json",
    }, {"run": run.id, "job": run.job_id, "status": run.status, "attempt": run.attempt,
        "rows_in": run.rows_in, "rows_out": run.rows_out, "error": run.error})]
    for written in run.versions_written:
        dataset = context.store.dataset(written.ref)
        version = dataset.version(written.version)
        out.append(CloudEvent({
            "type": "io.dataferry.dataset.version.published",
            "source": f"/datasets/{written.ref}", "id": f"version-{written.ref}-{written.version}",
            "time": version.manifest.created_at, "subject": written.ref,
            "datacontenttype": "application/json",
        }, {"ref": written.ref, "version": written.version, "rows": version.manifest.rows,
            "manifest_hash": version.hash}))
    return out


def _resume_point(context: RunContext, last_event_id: str | None) -> datetime | None:
    """Where a reconnecting client stopped: the end time of the run it saw last."""
    found = _RUN_EVENT.fullmatch(last_event_id or "")
    if found is not None and int(found[1]) <= MAX_ID:  # other ids name no run (nor fit)
        run = context.runs.get_run(int(found[1]))
        if run is not None and run.ended_at is not None:
            return run.ended_at
    return None


@router.get("/events", response_class=StreamingResponse)
async def events(request: Request, _: CurrentPrincipal,
                 last_event_id: Annotated[str | None, Header()] = None,
                 since_start: Annotated[bool, Query(
                     description="Replay every recorded run first")] = False,
                 timeout: Annotated[float | None, Query(gt=0, le=3600)] = None,
                 ) -> StreamingResponse:
    """Server-Sent Events: CloudEvents (structured JSON) of runs and published versions."""
    context: RunContext = request.app.state.context
    cursor = _resume_point(context, last_event_id)
    if cursor is None and not since_start:
        latest = context.runs.list_runs(limit=1)
        cursor = latest[0].ended_at or latest[0].started_at if latest else None

    async def stream() -> AsyncIterator[bytes]:
        nonlocal cursor
        deadline = time.monotonic() + timeout if timeout is not None else None
        quiet_since = time.monotonic()
        yield b"retry: 2000\n\n"
        while deadline is None or time.monotonic() < deadline:
            if await request.is_disconnected():
                return
            runs = await asyncio.to_thread(context.runs.ended_since, cursor)
            for run in runs:
                cursor = run.ended_at
                for event in run_events(context, run):
                    yield _frame(f"run-{run.id}", to_json(event))
                quiet_since = time.monotonic()
            if time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _frame(event_id: str, data: bytes) -> bytes:
    return b"id: " + event_id.encode() + b"\nevent: cloudevent\ndata: " + data + b"\n\n"

