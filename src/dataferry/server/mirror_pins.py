"""Pins of a bounded mirror last one request (``store.mirror_cache.pinning``)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from dataferry.store.mirror_cache import pinning


class PinPerRequest:
    """Wraps an ASGI app: the store files a request reads (an ``s3://`` store's mirror)
    are pinned until its response is sent, then may be evicted; without this a server
    would hold every file it ever served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with pinning():
            await self.app(scope, receive, send)
