"""The Python DSL: build a team's model in code, for generated or very large ecosystems.

    from dataferry.model import Team, Column, Need
    team = Team("crm", zone="eu", owners=["alice@acme.example"])
    db = team.source("crmdb", kind="postgres", dsn="postgresql://...",
                     password="${env:CRM_DB_PASSWORD}")
    db.dataset("customers", table="public.customers", primary_key=["id"],
               columns=[Column("id", "int64", nullable=False), Column("email", "string")])
    team.consumer("warehouse", sink={"kind": "duckdb", "path": "wh.duckdb"},
                  datasets=[Need("crm.customers", mode="merge")])

A DSL file is a ``.py`` file in the model tree that imports ``dataferry.model``.
``ferry check`` runs it in a separate process with a timeout; every ``Team`` it creates
becomes part of the model, exactly as if it had been written in YAML (the builders only
produce the YAML-shaped data; the same validation then applies). Keyword arguments are
the YAML keys of MODEL.md.
"""

from __future__ import annotations

import sys
from typing import Any

_teams: list[Team] = []
_current_file: str | None = None


def _call_site() -> tuple[int, int]:
    """The line in the DSL file being run that led to this call (for findings)."""
    frame = sys._getframe(2)
    while frame is not None:
        if _current_file is not None and frame.f_code.co_filename == _current_file:
            return (frame.f_lineno, 1)
        frame = frame.f_back  # type: ignore[assignment]
    return (1, 1)


class _Node:
    """Something that becomes a YAML mapping, remembering where it was created."""

    def __init__(self, **fields: Any) -> None:
        self.fields = {k: v for k, v in fields.items() if v is not None}
        self.line = _call_site()

    def raw(self) -> dict[str, Any]:
        return {key: _raw(value) for key, value in self.fields.items()}


def _raw(value: Any) -> Any:
    if isinstance(value, _Node):
        return value.raw()
    if isinstance(value, dict):
        return {k: _raw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_raw(v) for v in value]
    return value


class Column(_Node):
    """A column: ``Column("id", "int64", nullable=False)``."""

    def __init__(self, name: str, type: str, **fields: Any) -> None:
        super().__init__(type=type, **fields)
        self.name = name


def _columns(columns: Any) -> Any:
    if isinstance(columns, list | tuple):
        return {c.name: c for c in columns}
    return columns


class Dataset(_Node):
    """A source dataset; made by ``Source.dataset``."""


class Source(_Node):
    """A source system of a team; made by ``Team.source``."""

    def __init__(self, kind: str, **fields: Any) -> None:
        super().__init__(kind=kind, **fields)
        self.datasets: dict[str, Dataset] = {}

    def dataset(self, name: str, columns: Any = None, **fields: Any) -> Dataset:
        dataset = Dataset(columns=_columns(columns), **fields)
        self.datasets[name] = dataset
        return dataset

    def raw(self) -> dict[str, Any]:
        out = super().raw()
        if self.datasets:
            out["datasets"] = {name: d.raw() for name, d in self.datasets.items()}
        return out


class Transformer(_Node):
    """A derived dataset; made by ``Team.transformer``."""


class Need(_Node):
    """One dataset a consumer needs: ``Need("sales.orders", mode="merge")``."""

    def __init__(self, ref: str, **fields: Any) -> None:
        super().__init__(ref=ref, **fields)


class Consumer(_Node):
    """A consumer of a team; made by ``Team.consumer``."""


class Team(_Node):
    """A team; every ``Team`` created while a DSL file runs is part of the model."""

    def __init__(self, name: str, **fields: Any) -> None:
        super().__init__(team=name, **fields)
        self.name = name
        self.sources: dict[str, Source] = {}
        self.transformers: dict[str, Transformer] = {}
        self.consumers: dict[str, Consumer] = {}
        _teams.append(self)

    def source(self, name: str, kind: str, **fields: Any) -> Source:
        source = Source(kind, **fields)
        self.sources[name] = source
        return source

    def transformer(self, name: str, columns: Any = None, **fields: Any) -> Transformer:
        transformer = Transformer(columns=_columns(columns), **fields)
        self.transformers[name] = transformer
        return transformer

    def consumer(self, name: str, datasets: Any = None, **fields: Any) -> Consumer:
        needs = [Need(d) if isinstance(d, str) else d for d in datasets or []]
        consumer = Consumer(datasets=needs, **fields)
        self.consumers[name] = consumer
        return consumer

    def raw(self) -> dict[str, Any]:
        out = super().raw()
        for section in ("sources", "transformers", "consumers"):
            entities: dict[str, _Node] = getattr(self, section)
            if entities:
                out[section] = {name: e.raw() for name, e in entities.items()}
        return out

    def marks(self) -> dict[str, tuple[int, int]]:
        """Where each entity was created: ``"sources/crmdb/datasets/customers" -> (line, 1)``."""
        marks = {"": self.line}
        for name, source in self.sources.items():
            marks[f"sources/{name}"] = source.line
            for dataset_name, dataset in source.datasets.items():
                marks[f"sources/{name}/datasets/{dataset_name}"] = dataset.line
        for section in ("transformers", "consumers"):
            for name, entity in getattr(self, section).items():
                marks[f"{section}/{name}"] = entity.line
        return marks
