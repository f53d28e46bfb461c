"""Which connector class serves a model's ``kind:`` (built-ins, then entry points).

Third-party packages add connectors through the entry point groups
``dataferry.sources`` and ``dataferry.sinks`` (name = kind, value = ``module:Class``).
"""

from __future__ import annotations

import importlib
from typing import Any

from dataferry.errors import UsageError

SOURCES = {
    "postgres": "dataferry.connectors.postgres.source:PostgresSource",
    "mysql": "dataferry.connectors.mysql.source:MysqlSource",
    "sqlite": "dataferry.connectors.sqlite.source:SqliteSource",
    "duckdb": "dataferry.connectors.duckdb.source:DuckdbSource",
    "files": "dataferry.connectors.files.source:FilesSource",
    "http": "dataferry.connectors.http.source:HttpSource",
    "mqtt": "dataferry.connectors.mqtt.source:MqttSource",
    "nats": "dataferry.connectors.nats.source:NatsSource",
}
SINKS = {
    "postgres": "dataferry.connectors.postgres.sink:PostgresSink",
    "mysql": "dataferry.connectors.mysql.sink:MysqlSink",
    "sqlite": "dataferry.connectors.sqlite.sink:SqliteSink",
    "duckdb": "dataferry.connectors.duckdb.sink:DuckdbSink",
    "parquet": "dataferry.connectors.parquet.sink:ParquetSink",
}


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def _find(kind: str, built_in: dict[str, str], group: str) -> Any:
    if kind in built_in:
        return _load(built_in[kind])
    from importlib.metadata import entry_points  # only for third-party kinds: it is slow

    for entry in entry_points(group=group):
        if entry.name == kind:
            return entry.load()
    raise UsageError(f"no {group.split('.')[-1][:-1]} connector for kind {kind!r}")


def source_class(kind: str) -> Any:
    return _find(kind, SOURCES, "dataferry.sources")


def sink_class(kind: str) -> Any:
    return _find(kind, SINKS, "dataferry.sinks")
