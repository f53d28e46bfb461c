"""Look-ups over a loaded ecosystem: every dataset by reference, who receives what."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from dataferry.model.findings import Path
from dataferry.model.spec import (
    AnySource,
    Consumer,
    DatasetCommon,
    Ecosystem,
    Need,
    SourceDataset,
    Transformer,
)


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset (source dataset or transformer output) with where it lives in the model."""

    ref: str
    team: str
    name: str
    spec: DatasetCommon
    path: Path
    source_name: str | None = None
    source: AnySource | None = None

    @property
    def is_transformer(self) -> bool:
        return isinstance(self.spec, Transformer)

    @property
    def dataset(self) -> SourceDataset:
        assert isinstance(self.spec, SourceDataset)
        return self.spec


@dataclass(frozen=True)
class Receipt:
    """One team receiving a dataset: a consumer need, or a transformer input."""

    team: str
    entity: str  # consumer or transformer name
    ref: str
    path: Path  # where the reference is written
    need: Need | None  # None for a transformer input (all columns)

    @property
    def label(self) -> str:
        kind = "consumer" if self.need is not None else "transformer"
        return f"{kind} {self.team}.{self.entity}"


class ModelIndex:
    """Indexes of an ``Ecosystem`` that the checks, planner and server share."""

    def __init__(self, ecosystem: Ecosystem) -> None:
        self.ecosystem = ecosystem

    @cached_property
    def datasets(self) -> dict[str, DatasetEntry]:
        out: dict[str, DatasetEntry] = {}
        for team_name, team in self.ecosystem.teams.items():
            for source_name, source in team.sources.items():
                for name, dataset in source.datasets.items():
                    ref = f"{team_name}.{name}"
                    path = ("teams", team_name, "sources", source_name, "datasets", name)
                    out.setdefault(
                        ref, DatasetEntry(ref, team_name, name, dataset, path, source_name, source)
                    )
            for name, transformer in team.transformers.items():
                ref = f"{team_name}.{name}"
                out.setdefault(
                    ref,
                    DatasetEntry(ref, team_name, name, transformer,
                                 ("teams", team_name, "transformers", name)),
                )
        return out

    @cached_property
    def consumers(self) -> dict[str, tuple[str, str, Consumer]]:
        return {
            f"{team_name}.{name}": (team_name, name, consumer)
            for team_name, team in self.ecosystem.teams.items()
            for name, consumer in team.consumers.items()
        }

    def receipts(self) -> Iterator[Receipt]:
        """Every (team, consumer/transformer) that receives a dataset."""
        for team_name, team in self.ecosystem.teams.items():
            for name, consumer in team.consumers.items():
                for index, need in enumerate(consumer.datasets):
                    path: Path = ("teams", team_name, "consumers", name, "datasets", index, "ref")
                    yield Receipt(team_name, name, need.ref, path, need)
            for name, transformer in team.transformers.items():
                for index, ref in enumerate(transformer.inputs):
                    path = ("teams", team_name, "transformers", name, "inputs", index)
                    yield Receipt(team_name, name, ref, path, None)

    @cached_property
    def receivers(self) -> dict[str, list[Receipt]]:
        out: dict[str, list[Receipt]] = {}
        for receipt in self.receipts():
            out.setdefault(receipt.ref, []).append(receipt)
        return out

    def zone_of(self, team: str) -> str:
        return self.ecosystem.teams[team].zone

    def delivered_columns(self, receipt: Receipt) -> list[str]:
        entry = self.datasets[receipt.ref]
        if receipt.need is not None and receipt.need.columns is not None:
            return [c for c in receipt.need.columns if c in entry.spec.columns]
        return list(entry.spec.columns)

    @cached_property
    def networks(self) -> dict[str, str]:
        """Network name -> the platform that runs jobs in it."""
        return {
            platform.network: name
            for name, platform in self.ecosystem.platforms.items()
            if platform.network is not None
        }
