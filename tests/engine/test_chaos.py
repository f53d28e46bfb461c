"""The fault suite (bench/chaos.py) in small: SIGKILLed runs lose and double nothing.

Runs the bench's own rounds on a 2,000-row PostgreSQL source with the embedded sinks
(SQLite merge, DuckDB replace, Parquet append): each round changes the source, kills
``ferry run`` at a random moment or crash point, runs it again, and compares every sink
with the source by row hash. The full suite, with the PostgreSQL and MariaDB sinks and
50,000 rows, is ``python bench/chaos.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import require_service

BENCH = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ferry_bench_chaos", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_killed_runs_lose_and_double_nothing_in_any_embedded_sink() -> None:
    require_service("postgres")
    chaos = _bench()
    lines: list[str] = []
    summary = chaos.chaos(chaos.Config(rows=2_000, rounds=3, seed=7,
                                       sinks=("lite", "duck", "lake"), out=lines.append))
    assert summary.rounds == 3
    assert summary.kills >= 1, lines
    assert summary.mismatches == 0, "\n".join(lines)
    assert lines[-1].startswith("summary: 3 rounds")


def test_the_check_names_the_keys_a_sink_lost_or_doubled() -> None:
    """A checker that cannot see a loss proves nothing: a missing, a changed and a doubled
    row are each reported with their key."""
    chaos = _bench()
    source = [(1, "1.00", "a"), (2, "2.00", "b"), (3, "3.00", "c")]
    assert chaos.compare("sink", source, list(reversed(source))) == []
    lost = chaos.compare("sink", source, source[:2])
    changed = chaos.compare("sink", source, [source[0], (2, "2.01", "b"), source[2]])
    doubled = chaos.compare("sink", source, [*source, source[1]])
    assert "first keys [3]" in lost[0]
    assert "first keys [2]" in changed[0]
    assert "first keys [2]" in doubled[0] and "1 rows not in the source" in doubled[0]
