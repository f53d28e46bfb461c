"""What a running job needs: the model, its indexes and the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dataferry.model.graph import ModelIndex
from dataferry.model.load import LoadedModel
from dataferry.model.spec import Ecosystem
from dataferry.store.store import Store


@dataclass
class RunContext:
    root: Path
    ecosystem: Ecosystem
    index: ModelIndex
    store: Store

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> RunContext:
        assert loaded.ecosystem is not None
        return cls(loaded.root, loaded.ecosystem, ModelIndex(loaded.ecosystem),
                   Store.for_model(loaded.root, loaded.ecosystem))
