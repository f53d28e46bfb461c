"""The Spark session the Spark tests share, or a skip saying what is missing.

One session per test process (Spark starts in 5-40 s): ``engine.spark_session`` keeps
it, this fixture stops it when the session ends. Without pyspark or a Java runtime the
tests skip with the reason, or fail under FERRY_REQUIRE_SERVICES=1 (CI installs both).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from dataferry.engine.spark_session import spark_session, stop_spark
from dataferry.model.spec import Platform

PLATFORM = Platform(engine="spark", master="local[2]")


def _missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install -e '.[dev]' installs dataferry[spark])"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java runtime (bash .ci/services.sh installs openjdk-17-jre-headless)"
    return None


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The process's Spark session on ``local[2]``."""
    missing = _missing()
    if missing is not None:
        if os.environ.get("FERRY_REQUIRE_SERVICES") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    yield spark_session("spark", PLATFORM)
    stop_spark()
