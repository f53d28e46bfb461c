"""HTTP source: JSON or NDJSON records from REST endpoints (``source.py``), with the JSON
to Arrow conversion JSON Lines files share (``records.py``).

``HttpSource`` is imported on first use: a job that only needs ``records.py`` (a JSON Lines
file) does not load httpx."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataferry.connectors.http.source import HttpSource

__all__ = ["HttpSource"]


def __getattr__(name: str) -> Any:
    if name == "HttpSource":
        from dataferry.connectors.http.source import HttpSource

        return HttpSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
