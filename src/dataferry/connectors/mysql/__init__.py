"""MariaDB/MySQL connector: ``MysqlSource`` (tables and queries as Arrow streams) and
``MysqlSink`` (replace, merge, append and history deliveries, exactly once).

Modules: ``connection`` (DSN, sessions, errors, quoting), ``types`` (both type mappings,
documented there), ``decode``/``source`` (reading), ``encode``/``bulk`` (rendering and
bulk loading), ``tables``/``replace``/``sink`` (target tables, the crash-safe swap and
the modes). The driver is PyMySQL (pure Python, no system libraries needed).
"""

from __future__ import annotations

from dataferry.connectors.mysql.sink import MysqlSink
from dataferry.connectors.mysql.source import MysqlSource

__all__ = ["MysqlSink", "MysqlSource"]
