"""Files source: CSV, Parquet and JSON Lines files matched by a glob (``source.py``)."""

from dataferry.connectors.files.source import FilesSource

__all__ = ["FilesSource"]
