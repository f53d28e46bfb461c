"""``ferry check`` on transformers that may run on Spark: ``spark-unsupported``.

A transformer may run on a Spark platform (``engine: spark``) when its ``platform:``
names one, when ``defaults.platform`` is one, or, for a SQL transformer, when a Spark
platform has a ``min_rows`` its zone allows (the planner sends it there once its inputs
reach that size). For each, what cannot run there is an error now, not a failed run:

- SQL that sqlglot cannot carry from DuckDB's dialect to Spark's (``engine.spark_sql``:
  a construct it refuses, a DuckDB function it does not know, an ASOF join);
- a Python transformer on a Spark platform by ``platform:`` or ``defaults.platform``: it
  gets whole Arrow tables of its inputs, and Spark would hand it partitions. (The
  planner never sends one to Spark by size.)

sqlglot is imported only when some transformer may run on Spark.
"""

from __future__ import annotations

from collections.abc import Collection

from dataferry.model.graph import DatasetEntry, ModelIndex
from dataferry.model.load import LoadedModel
from dataferry.model.reads import transformer_sql
from dataferry.model.spec import Ecosystem, Transformer

CODE = "spark-unsupported"


def check_spark(loaded: LoadedModel, index: ModelIndex,
                refs: Collection[str] | None = None) -> None:
    """Add a ``spark-unsupported`` finding for each transformer (of ``refs`` when given)
    that may run on Spark but cannot."""
    eco = loaded.ecosystem
    if eco is None or not any(p.engine == "spark" for p in eco.platforms.values()):
        return
    entries = index.datasets.values() if refs is None else [
        index.datasets[ref] for ref in refs if ref in index.datasets]
    for entry in entries:
        spec = entry.spec
        if not isinstance(spec, Transformer):
            continue
        where = _spark_platform(eco, entry, python=spec.python is not None)
        if where is None:
            continue
        platform, why = where
        if spec.python is not None:
            loaded.report.add(
                CODE, f"transformer {entry.ref} is Python ({spec.python}) and would run on "
                f"Spark platform {platform} ({why}): a Python transformer gets whole Arrow "
                "tables of its inputs, Spark would hand it partitions; set platform: to a "
                "DuckDB platform (local)", (*entry.path, "platform"))
            continue
        sql = transformer_sql(spec, loaded.root / "teams" / entry.team)
        if sql is None:
            continue  # reported where the file is read
        from dataferry.engine.spark_sql import NotCarried, to_spark

        carried = to_spark(sql)
        if isinstance(carried, NotCarried):
            loaded.report.add(
                CODE, f"transformer {entry.ref} may run on Spark platform {platform} "
                f"({why}), but its SQL cannot be carried there: {carried.reason}",
                (*entry.path, "sql" if spec.sql is not None else "sql_file"))


def _spark_platform(eco: Ecosystem, entry: DatasetEntry, *, python: bool
                    ) -> tuple[str, str] | None:
    """A Spark platform the transformer may run on, and why; None when it never does."""
    explicit = entry.spec.platform
    if explicit is not None:
        found = eco.platforms.get(explicit)
        return (explicit, "platform: names it") if (
            found is not None and found.engine == "spark") else None
    default = eco.platforms.get(eco.defaults.platform)
    if default is not None and default.engine == "spark":
        return eco.defaults.platform, "defaults.platform"
    if python:
        return None  # the planner never sends a Python transformer to Spark by size
    zone = eco.zones.get(eco.teams[entry.team].zone) if entry.team in eco.teams else None
    allowed = zone.platforms if zone is not None else None
    for name, platform in sorted(eco.platforms.items()):
        if (platform.engine == "spark" and platform.min_rows is not None
                and platform.network is None and (allowed is None or name in allowed)):
            return name, f"once its inputs reach its min_rows of {platform.min_rows:,}"
    return None
