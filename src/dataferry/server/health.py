"""Probes for process supervisors and orchestrators: ``GET /healthz`` and ``/readyz``.

Neither needs a login and neither says more than a status word, so they can face a load
balancer. ``/healthz`` answers while the process serves requests (a liveness probe:
restart the container when it stops answering). ``/readyz`` answers 200 only when the
metadata database answers a query and the server is not stopping (a readiness probe:
send no traffic until then); otherwise 503, with the reason in the server's log only.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from dataferry.engine.context import RunContext

router = APIRouter(include_in_schema=False)
log = logging.getLogger("dataferry.server")


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    shutdown = getattr(request.app.state, "shutdown", None)
    if shutdown is not None and shutdown.stop.is_set():
        return _unready("stopping")
    context: RunContext = request.app.state.context
    try:
        await asyncio.to_thread(_ping, context)
    except Exception as exc:
        log.warning("readyz: the metadata database does not answer: %s", type(exc).__name__)
        return _unready("metadata database unavailable")
    return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})


def _ping(context: RunContext) -> None:
    from sqlalchemy import text

    with context.metadata.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _unready(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503,
                        headers={"Cache-Control": "no-store", "Retry-After": "5"})
