"""``BodySizeLimit``: refuse request bodies over a size before anything reads them (413).

Without it, an unauthenticated caller could post hundreds of megabytes to the login
route and the server would hold all of it in memory to parse it as JSON. This is pure
ASGI middleware so it acts before any parsing: a ``Content-Length`` over the limit is
refused at once, without reading the body; a body without one (chunked) is counted as
it streams in and cut off at the limit. Either way the answer is 413 in the API's error
shape, and the server stops reading: uvicorn closes the connection rather than read on.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_SIZE = 1024 * 1024
"""1 MiB: far above any form or JSON body the server takes (``ferry serve --max-body-size``)."""
UPLOAD_PATH = re.compile(r"^/api/v1/agent/jobs/\d+/files/[^/]+$")
UPLOAD_MAX_BYTES = 512 * 1024 * 1024
"""The one route that takes files: a gateway agent's uploads (authenticated before a byte
is read; the agent writes files of at most 64 MiB, ``agent.work``)."""


class BodyTooLarge(Exception):
    """Raised into the app when a streamed body passes the limit; the middleware answers."""


class BodySizeLimit:
    """Wraps an ASGI app: HTTP request bodies over ``max_bytes`` get 413."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_SIZE) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = (max(self.max_bytes, UPLOAD_MAX_BYTES)
                 if scope.get("method") == "PUT" and UPLOAD_PATH.match(str(scope["path"]))
                 else self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(send, limit)
            return
        received = 0
        exceeded = False
        responded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal responded
            if exceeded:
                return  # whatever the app makes of the cut-off body, the answer is 413
            responded = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not responded:
            await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps({"error": {
            "code": "content_too_large",
            "message": f"the request body is larger than the server accepts "
                       f"({limit} bytes); send less"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    """The declared body size; a malformed header counts as too large (nothing sane
    sends one, and the server must not try to read an unknown amount)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 2**63
    return None
