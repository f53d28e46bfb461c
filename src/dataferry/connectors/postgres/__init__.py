"""PostgreSQL source and sink (``kind: postgres``).

``PostgresSource`` streams tables and queries through ADBC (binary COPY) as Arrow record
batches; ``PostgresSink`` loads deliveries with ADBC bulk ingest (binary COPY) and applies
them in one transaction with their ``_ferry_loads`` row. ``types.py`` documents the type
mapping both ways; ``connect`` opens a psycopg connection with the secret resolved.

Modules: ``connection`` (connection strings, error classification, quoting), ``reading``
(per-column read plans), ``source``, ``writing`` (Arrow arrays in the form COPY needs),
``tables`` (``_ferry_loads``, creating and evolving targets), ``sink``, ``types``.
"""

import sys


def _import_adbc_without_polars() -> None:
    """Import ADBC's DB-API module without the polars it loads only to offer it as a result
    type (dataferry reads pyarrow): 0.1 s of every run on machines that have polars.
    Polars still imports normally afterwards, and is used when something loaded it first."""
    if "polars" in sys.modules:
        import adbc_driver_postgresql.dbapi
        return
    sys.modules["polars"] = None  # type: ignore[assignment]  # makes `import polars` fail
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    finally:
        del sys.modules["polars"]


_import_adbc_without_polars()

from dataferry.connectors.postgres.connection import connect  # noqa: E402
from dataferry.connectors.postgres.sink import PostgresSink  # noqa: E402
from dataferry.connectors.postgres.source import PostgresSource  # noqa: E402

__all__ = ["PostgresSink", "PostgresSource", "connect"]
