"""What a database or a set of files holds, as ``ferry discover`` finds it.

Each kind's catalog module (``postgres.py``, ``mysql.py``, ``sqlite.py``, ``duckdb.py``,
``files.py``) describes its tables as ``LiveTable``: the connector's own live columns
(``SourceConnector.columns``, so discover maps types as the ingest reads them), the
declared type each one maps to, and the keys and indexes from the catalog.
``teamfile.py`` turns them into a team file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dataferry.connectors.base import SourceColumn
from dataferry.model.spec import SourceDataset


@dataclass(frozen=True)
class LiveColumn:
    """One column: as the source has it, and the declared type discover proposes."""

    source: SourceColumn
    type: str  # a declared type, canonical spelling
    note: str | None = None  # why the type is not the obvious one (shown as a comment)
    values: tuple[str, ...] = ()  # an enum's values (an accepted_values check)

    @property
    def name(self) -> str:
        return self.source.name


@dataclass
class LiveTable:
    """One table (or view, or file group) and what its catalog says about it."""

    name: str  # its own name, e.g. ``Order Items`` (the dataset name is made from it)
    table: str | None  # how ``table:`` names it for the connector, None for files
    columns: list[LiveColumn]
    primary_key: list[str] = field(default_factory=list)
    indexed: set[str] = field(default_factory=set)  # columns that lead an index
    unique: list[list[str]] = field(default_factory=list)  # unique indexes (key candidates)
    view: bool = False
    quote: Callable[[str], str] | None = None
    """Quotes a column name in the source's SQL (for a ``query:`` that renames columns)."""
    relation: str = ""  # the table as SQL (for a ``query:``)
    query_only: bool = False  # ``table:`` cannot name it (a dot in a name): use a query


@dataclass
class LiveSource:
    """What a target holds: the source's model keys and its tables."""

    kind: str
    name: str  # the source's name in the team file
    keys: dict[str, str]  # dsn/password/path..., as the team file writes them
    tables: list[LiveTable]
    described: str  # the target without a password, for the header comment


def probe(*, table: str | None = None, query: str | None = None) -> SourceDataset:
    """A dataset spec with no declared columns, to ask a connector for its live columns."""
    return SourceDataset.model_construct(table=table, query=query, columns={})
