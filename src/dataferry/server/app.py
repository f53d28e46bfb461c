"""The application factory: ``create_app(context)`` is what ``ferry serve`` runs.

The app keeps the model's ``RunContext`` (``app.state.context``: every request reads it
once, and a model reload swaps it, see ``model_reload``) and the authentication services
(``app.state.auth``). Every API route lives under ``/api/v1``; the routers are
listed in ``api_routers`` — add new ones there. OpenAPI is at ``/openapi.json``. The web
UI (``dataferry.server.ui``) serves pages at ``/`` and its stylesheet under ``/static``.
With ``scheduler=True`` the broker's scheduler runs in a background thread for the
app's lifetime and is stopped (waiting for running jobs) at shutdown.

Stopping (``serve``, on SIGTERM or SIGINT) begins before uvicorn waits for open
connections (``app.state.shutdown``): event streams end and the scheduler and its
notifier stop at once, so the server is gone in seconds however many clients listen.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dataferry import __version__
from dataferry.engine.context import RunContext
from dataferry.metadata import Clock, utcnow
from dataferry.server import catalog, ui
from dataferry.server.api_docs import install_api_docs
from dataferry.server.auth import Auth, AuthSettings, scopes
from dataferry.server.body_limit import DEFAULT_MAX_BODY_SIZE, BodySizeLimit
from dataferry.server.errors import install_error_handlers
from dataferry.server.mirror_pins import PinPerRequest

API_PREFIX = "/api/v1"
SCHEDULER_TICK_SECONDS = 5.0
GRACE_SECONDS = 3
"""How long a stopping server lets requests still open finish before it cancels them."""
log = logging.getLogger("dataferry.server")


def api_routers() -> list[APIRouter]:
    """Every router mounted under ``/api/v1``, in order. Add the catalog routers here."""
    from dataferry.agent import hub_api as agents
    from dataferry.replication import serve as replication
    from dataferry.server import api, events_api, model_reload
    from dataferry.server.auth import admin_routes, routes

    return [
        routes.router,  # /auth/login, /auth/logout, /me, /me/totp
        admin_routes.router,  # /users, /tokens
        api.router,  # /teams, /datasets, /consumers, /runs, /plan
        events_api.router,  # /events (Server-Sent Events of CloudEvents)
        model_reload.router,  # /model/reload
        replication.router,  # /replication/<ref>/... (docs/replication.md)
        agents.router,  # /agents (admins), /agent/... (gateway agents, docs/agents.md)
    ]


def create_app(context: RunContext, *, scheduler: bool = False,
               settings: AuthSettings | None = None, now: Clock = utcnow,
               max_body_size: int = DEFAULT_MAX_BODY_SIZE) -> FastAPI:
    """The dataferry server for one model: REST API (and, with ``scheduler``, the broker).

    Opens (and migrates) the model's metadata DB now, so a bad ``metadata:`` setting
    fails at start-up rather than on the first request. ``settings`` and ``now`` are for
    tuning and tests (token lifetimes, rate limits, a fake clock). Request bodies over
    ``max_body_size`` bytes get 413 before anything reads them.
    """
    app = FastAPI(title="dataferry", version=__version__, lifespan=_lifespan(scheduler),
                  openapi_url="/openapi.json", docs_url=None, redoc_url=None)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_size)
    app.add_middleware(PinPerRequest)
    app.state.context = context
    catalog.prepare(context.index)  # the search index, before the first search
    app.state.auth = Auth.for_context(context, settings, now)
    install_error_handlers(app)
    app.add_middleware(NoStoreForApi, prefix=API_PREFIX + "/")
    for router in api_routers():  # each operation's x-ferry-scope, from its dependencies
        app.include_router(scopes.declare_in_openapi(router), prefix=API_PREFIX)
    from dataferry.server import health

    app.include_router(health.router)  # /healthz, /readyz: probes for orchestrators
    app.include_router(ui.router)  # the web UI: /login, /, /datasets/..., /runs, /admin/...
    app.mount("/static", StaticFiles(directory=ui.STATIC), name="static")
    ui.install_error_pages(app, API_PREFIX)  # HTML error pages for UI routes; API stays JSON
    install_api_docs(app)  # /docs: Swagger UI from this server, not a CDN
    from dataferry.sharing import routes as sharing

    sharing.install(app)  # /delta-sharing/...: the Delta Sharing protocol (docs/sharing.md)
    return app


class NoStoreForApi:
    """Marks every API answer ``Cache-Control: no-store``: rows, runs, tokens and who the
    caller is are per user, and must stay in no browser's or proxy's cache. Pure ASGI (a
    ``BaseHTTPMiddleware`` would wrap every body, the event stream's too)."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(self.prefix):
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_no_store)


class Shutdown:
    """The app's stop, begun as soon as the server is asked to stop (``begin``), before
    uvicorn waits for open connections: ``closing`` ends the event streams, ``stop`` the
    scheduler's ticks and notify passes. Made in the lifespan, on the server's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.closing = asyncio.Event()
        self.stop = threading.Event()

    def begin(self) -> None:
        """Start stopping; safe from a signal handler or any thread, and more than once."""
        self.stop.set()
        self.loop.call_soon_threadsafe(self.closing.set)


def _lifespan(with_scheduler: bool
              ) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        shutdown = app.state.shutdown = Shutdown()
        thread = _start_scheduler(app, shutdown.stop) if with_scheduler else None
        try:
            yield
        finally:
            shutdown.begin()
            if thread is not None:
                log.info("stopping the scheduler: waiting for running jobs")
                await asyncio.to_thread(thread.join)

    return lifespan


def run_server(app: FastAPI, **options: Any) -> None:
    """Serve ``app`` with uvicorn (``options``: ``uvicorn.Config``'s) until SIGTERM or
    SIGINT, then stop within seconds: the app's ``Shutdown`` begins at the signal,
    requests still open after ``GRACE_SECONDS`` are cancelled, and the process returns
    here (exit code 0) rather than being killed by the signal uvicorn raises again."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            shutdown: Shutdown | None = getattr(app.state, "shutdown", None)
            if shutdown is not None:
                shutdown.begin()

    config = uvicorn.Config(app, timeout_graceful_shutdown=GRACE_SECONDS, **options)
    # uvicorn puts back the handlers it found and raises the signal again: one that
    # does nothing lets the caller clean up and exit normally.
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: None)
    try:
        Server(config).run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_scheduler(app: FastAPI, stop: threading.Event) -> threading.Thread:
    """The scheduler in a thread of its own, kept as ``app.state.scheduler`` (a model
    reload hands it the new model)."""
    from dataferry.broker.scheduler import Scheduler

    scheduler = Scheduler(app.state.context)
    app.state.scheduler = scheduler

    def run() -> None:
        try:
            scheduler.run_forever(SCHEDULER_TICK_SECONDS, stop)
        except Exception:  # a dead scheduler must show in the log, not vanish
            log.exception("the scheduler stopped with an error")

    thread = threading.Thread(target=run, name="ferry-scheduler", daemon=True)
    thread.start()
    log.info("scheduler started: %d jobs", len(scheduler.graph.jobs))
    return thread
