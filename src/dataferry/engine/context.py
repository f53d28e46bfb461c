"""What a running job needs: the model, its indexes, the store and the metadata DB."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from dataferry.model.graph import ModelIndex
from dataferry.model.load import LoadedModel
from dataferry.model.spec import DatasetCommon, Ecosystem
from dataferry.store.store import Store

if TYPE_CHECKING:
    from dataferry.metadata import Metadata, RunHistory


@dataclass
class RunContext:
    root: Path
    ecosystem: Ecosystem
    index: ModelIndex
    store: Store
    allow_delete: bool = False
    """``ferry run --allow-delete``: replaces may remove any share of a dataset's rows."""

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> RunContext:
        assert loaded.ecosystem is not None
        return cls(loaded.root, loaded.ecosystem, ModelIndex(loaded.ecosystem),
                   Store.for_model(loaded.root, loaded.ecosystem))

    def max_delete_ratio(self, spec: DatasetCommon) -> float | None:
        """The share of ``spec``'s rows a replace may remove (None: any); see delete_limit."""
        if self.allow_delete:
            return None
        if spec.max_delete_ratio is not None:
            return spec.max_delete_ratio
        return self.ecosystem.defaults.max_delete_ratio

    @property
    def metadata_url(self) -> str:
        """The URL of the ecosystem's metadata DB (``metadata:``; ``<home>/ferry.db``)."""
        from dataferry.metadata import metadata_url

        return metadata_url(self.store.home, self.ecosystem.metadata, root=self.root)

    @cached_property
    def metadata(self) -> Metadata:
        """The metadata DB, opened (and migrated) on first use only.

        Lazy so that commands which run no job never create the database file; cached so
        that one run opens it once, however many jobs it records.
        """
        from dataferry.metadata import open_metadata

        return open_metadata(self.metadata_url)

    @cached_property
    def runs(self) -> RunHistory:
        """The run history in the metadata DB (opens it on first use)."""
        from dataferry.metadata import RunHistory

        return RunHistory(self.metadata)

    def close(self) -> None:
        """Return the metadata DB's connections, if it was ever opened."""
        if "metadata" in self.__dict__:
            self.__dict__.pop("runs", None)
            self.__dict__.pop("metadata").close()
