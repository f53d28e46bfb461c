"""HTTP source: JSON or NDJSON records from REST endpoints (``source.py``), with the JSON
to Arrow conversion JSON Lines files share (``records.py``)."""

from dataferry.connectors.http.source import HttpSource

__all__ = ["HttpSource"]
