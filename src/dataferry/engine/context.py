"""What a running job needs: the model, its indexes, the store and the metadata DB."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from dataferry.errors import ModelError
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
    agent_wait: float | None = None
    """``ferry run --agent-wait``: how long a job of a private network waits for an agent
    to take it (None: ``agent.dispatch.WAIT_SECONDS``)."""

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> RunContext:
        assert loaded.ecosystem is not None
        return cls(loaded.root, loaded.ecosystem, ModelIndex(loaded.ecosystem),
                   Store.for_model(loaded.root, loaded.ecosystem))

    def with_model(self, loaded: LoadedModel) -> RunContext:
        """This context with a changed model (``ferry serve`` reloading it): the new
        ecosystem and its index over the same store and the same opened metadata DB.

        Raises ``ModelError`` when the change moves the home, the store or the metadata
        DB: a running server cannot switch those (restart it).
        """
        assert loaded.ecosystem is not None
        store = Store.for_model(loaded.root, loaded.ecosystem)
        changed = RunContext(loaded.root, loaded.ecosystem, ModelIndex(loaded.ecosystem), store,
                             self.allow_delete)
        moved = [what for what, old, new in (
            ("home", self.store.home, store.home), ("store", self.store.root, store.root),
            ("metadata", self.metadata_url, changed.metadata_url)) if old != new]
        if moved:
            raise ModelError(f"the changed model moves {' and '.join(moved)}; a running server "
                             "keeps its own: restart it to use the new one")
        for opened in ("metadata", "runs"):  # shared, not opened again
            if opened in self.__dict__:
                changed.__dict__[opened] = self.__dict__[opened]
        return changed

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
