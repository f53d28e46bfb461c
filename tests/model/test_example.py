"""The example ecosystem uses every feature of MODEL.md (it is what users copy from)."""

from __future__ import annotations

from pathlib import Path

from dataferry.model.check import check_model
from dataferry.model.scaffold import create_example
from dataferry.model.spec import CHECK_KINDS, SINK_KINDS, SOURCE_KINDS


def test_example_uses_every_feature(tmp_path: Path) -> None:
    create_example(tmp_path / "acme")
    result = check_model(tmp_path / "acme")
    assert result.ok, result.findings
    eco = result.loaded.ecosystem
    assert eco is not None
    assert len(eco.zones) >= 2 and len(eco.teams) >= 3
    assert {p.engine for p in eco.platforms.values()} == {"duckdb", "spark"}
    assert any(p.network for p in eco.platforms.values())
    teams = eco.teams.values()
    sources = [s for t in teams for s in t.sources.values()]
    datasets = [d for s in sources for d in s.datasets.values()]
    transformers = [x for t in teams for x in t.transformers.values()]
    consumers = [c for t in teams for c in t.consumers.values()]
    needs = [n for c in consumers for n in c.datasets]
    assert {s.kind for s in sources} == set(SOURCE_KINDS)
    assert {c.sink.kind for c in consumers} == set(SINK_KINDS)
    assert {n.mode for n in needs} == {"replace", "merge", "append", "history"}
    assert {d.capture for d in datasets} == {"snapshot", "incremental", "cdc"}
    checks = {next(iter(type(c).model_fields)) for d in [*datasets, *transformers] for c in d.checks}
    assert checks == set(CHECK_KINDS)
    assert all(any(getattr(x, k) for x in transformers) for k in ("sql", "sql_file", "python"))
    assert any(x.trigger == "on_change" for x in transformers)
    assert any(x.trigger != "on_change" for x in transformers)
    assert any(n.columns for n in needs) and any(n.where for n in needs)
    assert any(n.mask for n in needs) and any(n.table for n in needs) and any(n.freshness for n in needs)
    notify = {next(iter(type(n).model_fields)) for c in consumers for n in c.notify}
    assert notify == {"webhook", "nats"}
    assert any(d.allowed_consumers for d in datasets) and any(d.deprecated for d in datasets)
    assert any(d.schedule for d in datasets) and any(s.network for s in sources)
    assert "teams/marketing/model.py" in result.loaded.files  # the Python DSL
    assert {f.code for f in result.findings} == {"deprecated-dataset"}
