"""Files source: CSV, Parquet and JSON Lines files matched by a glob (``source.py``).

``FilesSource`` is imported on first use, so the store's use of ``formats.py`` does not
load the source's dependencies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataferry.connectors.files.source import FilesSource

__all__ = ["FilesSource"]


def __getattr__(name: str) -> Any:
    if name == "FilesSource":
        from dataferry.connectors.files.source import FilesSource

        return FilesSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
