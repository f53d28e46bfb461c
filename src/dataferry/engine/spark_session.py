"""The Spark session a run's Spark jobs share: one per process, started on first use.

Spark starts slowly (a JVM, 5-40 s), so every Spark job of a run (and of a scheduler or
server process) shares one session, started by the first of them; pyspark is imported
only then, so a run without Spark jobs never loads it. A process has one SparkContext:
a second Spark platform with another ``master`` is refused with what to do.

The settings hold for results, not only for speed: the session time zone is UTC (a
``timestamp_tz`` is an instant, shown and grouped in UTC, as DuckDB does), timestamps
are written as microseconds (Parquet's standard type, not Spark's legacy INT96) and ANSI
mode is on (an overflow or a failed cast fails the query, as on DuckDB, rather than
becoming NULL).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from dataferry.errors import FerryError
from dataferry.model.spec import Platform

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SHUFFLE_PARTITIONS = 8
"""Small on purpose: the default (200) makes small jobs pay for 200 tasks per shuffle;
a cluster sets ``spark.sql.shuffle.partitions`` (or adaptive execution coalesces)."""

SETTINGS = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.adaptive.enabled": "true",
}

_lock = threading.Lock()
_session: tuple[str, SparkSession] | None = None


class SparkUnavailable(FerryError):
    """Spark cannot start here (pyspark or Java missing, another master already running)."""


def spark_session(name: str, platform: Platform) -> SparkSession:
    """The process's session for Spark platform ``name`` (started on first use)."""
    global _session
    master = platform.master or "local[2]"
    with _lock:
        if _session is not None:
            running, session = _session
            if running != master:
                raise SparkUnavailable(
                    f"platform {name} wants Spark master {master}, but this process already "
                    f"runs Spark on {running}: a process has one Spark session; run the jobs "
                    "of each Spark platform in their own `ferry run`", public=True)
            return session
        _session = (master, _start(name, master))
        return _session[1]


def _start(name: str, master: str) -> SparkSession:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailable(
            f"platform {name} runs its jobs on Spark, but pyspark is not installed: "
            "pip install 'dataferry[spark]' (and a Java 17 runtime)", public=True) from None
    builder = SparkSession.builder.master(master).appName("dataferry")
    settings = dict(SETTINGS)
    settings.setdefault("spark.sql.shuffle.partitions",
                        os.environ.get("FERRY_SPARK_SHUFFLE_PARTITIONS", str(SHUFFLE_PARTITIONS)))
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # py4j: the JVM did not start (no Java, bad master URL)
        raise SparkUnavailable(
            f"platform {name}: Spark did not start on {master}: {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''} (is a Java 17 "
            "runtime on the PATH or JAVA_HOME?)",
            public=f"platform {name}: Spark did not start on {master}") from None
    session.sparkContext.setLogLevel("ERROR")
    return session


def stop_spark() -> None:
    """Stop the process's session, if one was started (tests; a process that is done)."""
    global _session
    with _lock:
        if _session is not None:
            _session[1].stop()
            _session = None
