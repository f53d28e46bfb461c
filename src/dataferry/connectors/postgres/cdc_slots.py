"""The slot and publication ``capture: cdc`` owns per dataset on a PostgreSQL source
(``ferry_<team>_<dataset>``): describing the table, making, checking, measuring and
dropping them. Reading the slot's changes is ``cdc``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import psycopg

from dataferry.connectors.changes import ChangeProblem
from dataferry.connectors.postgres.connection import ident, qualified, split_table
from dataferry.connectors.postgres.source import PostgresSource
from dataferry.errors import SourceError
from dataferry.model.spec import SourceDataset

SLOT_PREFIX = "ferry_"


def slot_name(dataset: str) -> str:
    """The slot (and publication) of ``dataset``: ``ferry_<team>_<dataset>``, lower case,
    other characters as ``_``, within PostgreSQL's 63 bytes (a hash keeps long ones apart)."""
    name = SLOT_PREFIX + re.sub(r"[^a-z0-9_]", "_", dataset.lower())
    if len(name) > 63:
        digest = hashlib.sha256(dataset.encode()).hexdigest()[:8]
        name = f"{name[:54]}_{digest}"
    return name


@dataclass(frozen=True)
class Table:
    """A captured table as the catalog describes it."""

    schema: str
    name: str
    columns: dict[str, tuple[int, str]]
    """Every live column: name -> (type oid, type as ``format_type`` writes it)."""
    identity: str
    """pg_class.relreplident: d default (the primary key), n nothing, f full, i index."""
    key: list[str]
    """The primary key's columns (empty: none)."""

    @property
    def relation(self) -> str:
        return qualified(self.schema, self.name)


def problems(source: PostgresSource, dataset: str, spec: SourceDataset) -> list[ChangeProblem]:
    """What keeps ``dataset`` from capturing cdc: the server's ``wal_level``, the role's
    REPLICATION attribute, the table's primary key (or replica identity)."""
    found: list[ChangeProblem] = []
    with source.server.connect(autocommit=True) as connection:
        try:
            row = connection.execute(
                "select current_setting('wal_level'), current_user, (select rolreplication "
                "or rolsuper from pg_roles where rolname = current_user)").fetchone()
        except psycopg.Error as exc:
            raise source.server.error(exc, f"checking cdc for {dataset} on") from None
    assert row is not None
    level, user, replication = row
    if level != "logical":
        found.append(ChangeProblem("unreachable", (
            f"{dataset}: cdc cannot run: the server's wal_level is {level}; set wal_level = "
            "logical (postgresql.conf) and restart it")))
    if not replication:
        found.append(ChangeProblem("unreachable", (
            f"{dataset}: cdc cannot run: role {user} lacks the REPLICATION attribute; "
            f"ALTER ROLE {ident(str(user))} REPLICATION")))
    if spec.table:
        table = describe(source, dataset, spec.table)
        if table.identity == "n" or (table.identity == "d" and not table.key):
            found.append(ChangeProblem("missing-primary-key", (
                f"{dataset}: cdc needs a primary key on table {table.schema}.{table.name} "
                "(or REPLICA IDENTITY FULL) to capture updates and deletes"), "error"))
    return found


def describe(source: PostgresSource, dataset: str, table_text: str) -> Table:
    try:
        schema, name = split_table(table_text)
    except ValueError as exc:
        raise SourceError(f"{dataset}: {exc}") from None
    relation = qualified(schema, name) if schema else ident(name)
    with source.server.connect(autocommit=True) as connection:
        try:
            found = connection.execute(
                "select n.nspname, c.relname, c.relreplident::text from pg_class c "
                "join pg_namespace n on n.oid = c.relnamespace where c.oid = %s::regclass",
                (relation,)).fetchone()
            assert found is not None
            columns = connection.execute(
                "select attname, atttypid::int8, format_type(atttypid, atttypmod) "
                "from pg_attribute where attrelid = %s::regclass and attnum > 0 "
                "and not attisdropped order by attnum", (relation,)).fetchall()
            key = connection.execute(
                "select a.attname from pg_index i join pg_attribute a on a.attrelid = "
                "i.indrelid and a.attnum = any(i.indkey) where i.indrelid = %s::regclass "
                "and i.indisprimary", (relation,)).fetchall()
        except psycopg.Error as exc:
            raise source.server.error(exc, f"describing {dataset} on") from None
    return Table(str(found[0]), str(found[1]), {str(n): (int(o), str(t)) for n, o, t in columns},
                  str(found[2]), [str(k) for (k,) in key])


def slot_exists(source: PostgresSource, slot: str) -> bool:
    with source.server.connect(autocommit=True) as connection:
        row = connection.execute(
            "select 1 from pg_replication_slots where slot_name = %s "
            "and database = current_database()", (slot,)).fetchone()
    return row is not None


def ensure_publication(source: PostgresSource, dataset: str, table: Table,
                        slot: str) -> None:
    """The dataset's publication, publishing exactly its table (inserts, updates, deletes,
    truncates). Refused for a table without a replica identity: its updates would fail
    at the source once it is published."""
    if table.identity == "n" or (table.identity == "d" and not table.key):
        raise SourceError(
            f"{dataset}: table {table.schema}.{table.name} has no primary key (nor a replica "
            "identity), so its updates and deletes cannot be captured; add a primary key "
            "or run ALTER TABLE ... REPLICA IDENTITY FULL", public=True)
    with source.server.connect(autocommit=True) as connection:
        try:
            exists = connection.execute("select 1 from pg_publication where pubname = %s",
                                        (slot,)).fetchone()
            verb = "alter publication {} set table {}" if exists else \
                "create publication {} for table {}"
            connection.execute(verb.format(ident(slot), table.relation))
            # a partitioned table's changes come under its own name, not its partitions'
            connection.execute(f"alter publication {ident(slot)} "
                               "set (publish_via_partition_root = true)")
        except psycopg.Error as exc:
            raise source.server.error(exc, f"creating publication {slot} for {dataset} on") \
                from None


def drop_slot(source: PostgresSource, slot: str) -> bool:
    """Drop ``slot`` if it exists (True: it did)."""
    with source.server.connect(autocommit=True) as connection:
        try:
            row = connection.execute(
                "select pg_drop_replication_slot(slot_name) from pg_replication_slots "
                "where slot_name = %s and database = current_database()", (slot,)).fetchone()
        except psycopg.Error as exc:
            raise source.server.error(exc, f"dropping replication slot {slot} on") from None
    return row is not None


def drop_publication(source: PostgresSource, slot: str) -> bool:
    """Drop the publication named ``slot`` if it exists (True: it did)."""
    with source.server.connect(autocommit=True) as connection:
        try:
            found = connection.execute("select 1 from pg_publication where pubname = %s",
                                       (slot,)).fetchone()
            if found is not None:
                connection.execute(f"drop publication {ident(slot)}")
        except psycopg.Error as exc:
            raise source.server.error(exc, f"dropping publication {slot} on") from None
    return found is not None


def lag_bytes(source: PostgresSource, dataset: str) -> int | None:
    """Bytes of WAL written since ``dataset``'s slot last confirmed a run (None: no slot)."""
    with source.server.connect(autocommit=True) as connection:
        try:
            row = connection.execute(
                "select pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 "
                "from pg_replication_slots where slot_name = %s "
                "and database = current_database()", (slot_name(dataset),)).fetchone()
        except psycopg.Error as exc:
            raise source.server.error(exc, f"measuring the lag of {dataset} on") from None
    return None if row is None or row[0] is None else max(int(row[0]), 0)


def release(source: PostgresSource, datasets: list[str]) -> list[str]:
    """Drop the slots and publications of ``datasets`` that exist in the source's database."""
    dropped = []
    for dataset in datasets:
        slot = slot_name(dataset)
        if drop_slot(source, slot):
            dropped.append(f"replication slot {slot}")
        if drop_publication(source, slot):
            dropped.append(f"publication {slot}")
    return dropped
