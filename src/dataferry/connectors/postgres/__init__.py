"""PostgreSQL source and sink (``kind: postgres``).

``PostgresSource`` streams tables and queries through ADBC (binary COPY) as Arrow record
batches; ``PostgresSink`` loads deliveries with ADBC bulk ingest (binary COPY) and applies
them in one transaction with their ``_ferry_loads`` row. ``types.py`` documents the type
mapping both ways; ``connect`` opens a psycopg connection with the secret resolved.

Modules: ``connection`` (connection strings, error classification, quoting), ``reading``
(per-column read plans), ``source``, ``writing`` (Arrow arrays in the form COPY needs),
``tables`` (``_ferry_loads``, creating and evolving targets), ``sink``, ``types``.
"""

from dataferry.connectors.postgres.connection import connect
from dataferry.connectors.postgres.sink import PostgresSink
from dataferry.connectors.postgres.source import PostgresSource

__all__ = ["PostgresSink", "PostgresSource", "connect"]
