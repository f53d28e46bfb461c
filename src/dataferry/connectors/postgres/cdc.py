"""``capture: cdc`` on a postgres source: the committed changes of a logical replication slot.

Each dataset gets its own slot and publication, both named ``slot_name(dataset)``
(``ferry_<team>_<dataset>``), with the built-in ``pgoutput`` plugin (no extension to
install, unlike wal2json). The run's position (``{"slot": ..., "lsn": ...}``) is the
version's cursor state in the signed manifest.

- **First run** (no position, or ``ferry run --full``): the slot is (re)created over a
  replication connection with ``SNAPSHOT 'export'``, and the table is read in one stream
  under that exported snapshot: exactly the rows committed before the slot's consistent
  point, which becomes the position. Published as a keyed replace.
- **Later runs** open a replication connection, take the server's flushed WAL position
  ``U`` (``IDENTIFY_SYSTEM``) and stream the slot from the head's position with
  ``START_REPLICATION`` (``cdc_stream``): the walsender decodes the WAL once and sends
  every transaction whose commit record starts before ``U``, whole (logical decoding
  emits a transaction at its commit, never rolled-back work). Transactions whose commit
  lies before the head's position are skipped (by the server, and here again): the head
  has them (a crash between publishing and confirming re-reads them). ``U`` is the new
  position. On a server of version 14 or later, a large transaction is streamed while
  the server decodes it (``streaming 'on'``, ``STREAM_MEMORY``) and decoded here
  meanwhile; its changes count only if its commit is read (``cdc_streamed``).
- **Values.** When every declared column has a binary decoder (``cdc_binary``: plain
  types) and the server is 14 or later, pgoutput sends binary values, decoded here into
  Arrow arrays checked like a table read's; the last change per key is kept by pyarrow
  (up to ``KEEP_BYTES`` of changes in memory) or by DuckDB over a local Parquet spill file.
  Otherwise the values come in their text form and are staged in a temporary table of a
  reading session (bounded memory here: batches of ``STAGE_ROWS``), and PostgreSQL
  itself casts them back to the columns' types and keeps the last change per key; the
  result is read with the same column plans as a table read (binary COPY through ADBC).
  Either way a value reads the same by snapshot or by change. Deleted keys are spilled
  to a local Parquet file while the upserts stream.
- Only after the version is published and signed does ``acknowledge`` confirm ``U``
  (a status update on a new stream: the slot's restart point moves without a second
  decode), so the slot holds no WAL older than the run. If that fails, the slot is
  advanced with ``pg_replication_slot_advance`` instead.

An update that changes the key gives a delete of the old key and an upsert of the new
one; a ``TRUNCATE`` makes the run a snapshot (the rows inserted after it are the whole
table). A declared column dropped or retyped at the source while changes were pending
stops the run before anything is published (added ones are ignored, as drift says).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import adbc_driver_manager
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataferry.connectors.base import ReadRequest
from dataferry.connectors.changes import ChangeSet
from dataferry.connectors.postgres import cdc_binary as binary
from dataferry.connectors.postgres import cdc_protocol as wire
from dataferry.connectors.postgres.cdc_slots import (
    Table,
    describe,
    drop_slot,
    ensure_publication,
    slot_exists,
    slot_name,
)
from dataferry.connectors.postgres.cdc_staging import Staged
from dataferry.connectors.postgres.cdc_stream import SlotStream
from dataferry.connectors.postgres.cdc_streamed import Streamed
from dataferry.connectors.postgres.connection import ident, literal
from dataferry.connectors.postgres.reading import BadValue, ColumnPlan, plan_column
from dataferry.connectors.postgres.source import PostgresSource, _apply, _match
from dataferry.errors import SourceError
from dataferry.faults import crash_point

STAGE_ROWS = 20_000
"""Decoded changes sent to the staging table at a time (the memory held here)."""
KEEP_BYTES = 64 << 20
"""Binary values: up to this many bytes of decoded changes stay in memory as Arrow tables
and the last change per key is found by pyarrow; past it they are spilled to a Parquet
file and DuckDB finds them (spilling past its memory limit)."""
FETCH_ROWS = 5_000
STREAMING = True
"""Ask a server of version 14 or later to stream large transactions before their commit
(pgoutput protocol version 2, ``streaming 'on'``; ``cdc_streamed``)."""
STREAM_MEMORY: str | None = None
"""The walsender's ``logical_decoding_work_mem`` for the read (None: the server's own,
64MB by default): a transaction whose decoded changes pass it is streamed in chunks of
about this size. Lower values (1MB, 8MB) made the 50,000-change run of ``bench/cdc.py``
no faster on a 2-core machine, often slower (docs/performance.md)."""
_TEXT_SESSION = (
    "set time zone 'UTC'",
    "set datestyle = 'ISO, YMD'",
    "set intervalstyle = 'iso_8601'",
    "set extra_float_digits = 3",
    "set bytea_output = 'hex'",
)
"""Settings of the decoding session: the text each value is sent in, read back exactly."""
_READ_SESSION = ("set time zone 'UTC'", "set intervalstyle = 'iso_8601'",
                 "set extra_float_digits = 3")
"""The reading session's (a table read's, but writable: it stages into temporary tables)."""


def read_changes(source: PostgresSource, request: ReadRequest) -> ChangeSet:
    """See the module docstring."""
    spec = request.spec
    if not spec.table:
        raise SourceError(f"{request.dataset}: cdc reads a table's changes; set table: "
                          "(a query: cannot be captured)", public=True)
    if not spec.primary_key:
        raise SourceError(f"{request.dataset}: cdc capture needs a primary_key", public=True)
    slot = slot_name(request.dataset)
    table = describe(source, request.dataset, spec.table)
    state = request.state or {}
    if state.get("slot") == slot and isinstance(state.get("lsn"), str):
        if slot_exists(source, slot):
            return _Changes(source, request, table, slot, wire.parse_lsn(state["lsn"])).read()
        warning = (f"{request.dataset}: replication slot {slot} is gone (dropped outside "
                   "ferry?); reading a new snapshot of the table")
        return _snapshot(source, request, table, slot, [warning])
    return _snapshot(source, request, table, slot, [])


def _snapshot(source: PostgresSource, request: ReadRequest, table: Table, slot: str,
              warnings: list[str]) -> ChangeSet:
    """A new slot and the table as its exported snapshot sees it."""
    ensure_publication(source, request.dataset, table, slot)
    drop_slot(source, slot)  # a snapshot needs the slot's own: start it over
    replication = source.server.connect_replication()
    try:
        result = replication.pgconn.exec_(
            f"CREATE_REPLICATION_SLOT {ident(slot)} LOGICAL pgoutput "
            "(SNAPSHOT 'export')".encode())
        if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
            message = (result.error_message or b"").decode("utf-8", "replace").strip()
            raise SourceError(f"{request.dataset}: cannot create replication slot {slot} on "
                              f"{source.server.what}: {message} (the role needs the "
                              "REPLICATION attribute and wal_level must be logical)",
                              public=True)
        names = [result.fname(i) for i in range(result.nfields)]
        row = {name: result.get_value(0, i) for i, name in enumerate(names)}
        consistent = (row[b"consistent_point"] or b"").decode()
        snapshot = (row[b"snapshot_name"] or b"").decode()
        read = source.read_table(request, snapshot=snapshot)
    finally:
        replication.close()  # the read imported the snapshot: the export may end
    return ChangeSet(read.reader, None, {"slot": slot, "lsn": consistent},
                     warnings=warnings + read.warnings, snapshot=True)


class _Changes:
    """One run's read of the slot (see the module docstring)."""

    def __init__(self, source: PostgresSource, request: ReadRequest, table: Table, slot: str,
                 start: int) -> None:
        self.source, self.request, self.table, self.slot = source, request, table, slot
        self.start = start
        self.dataset = request.dataset
        self.live = {name: info for name, info, _ in source._live(self.dataset, request.spec)}
        self.sources = [_match(self.dataset, name, self.live) for name in request.columns]
        self.keys = [_match(self.dataset, k, self.live) for k in request.spec.primary_key]
        missing = [k for k in self.keys if k not in self.sources]
        if missing:
            raise SourceError(f"{self.dataset}: the primary key column(s) "
                              f"{', '.join(missing)} must be declared columns")
        self.plans = [plan_column(name, src, self.live[src])
                      for name, src in zip(request.columns, self.sources, strict=True)]
        self.truncated_at = -1
        self.transactions = 0
        self.streamed = Streamed()
        self.batch_top = 0  # the streamed transaction of the staged changes (0: none)
        self.stream: SlotStream | None = None
        self.session: tuple[Any, Any] | None = None  # the staging (ADBC) connection, cursor
        self.spill: pq.ParquetWriter | None = None
        self.kept: list[pa.Table] = []  # binary values, decoded, not spilled (yet)
        self.kept_bytes = 0
        self.options: dict[str, str] = {}
        self.layout: tuple[int, list[int]] = (0, [])  # our relation: columns, positions
        self.decoders: list[binary.Decoder] | None = None
        self.work = Path()

    def read(self) -> ChangeSet:
        work = Path(tempfile.mkdtemp(prefix="ferry-cdc-"))
        schema = pa.schema([p.field for p in self.plans])

        def close() -> None:
            if self.stream is not None:
                self.stream.close()
            shutil.rmtree(work, ignore_errors=True)

        try:
            self.stream = SlotStream(self.source.server.connect_replication(), self.slot,
                                     self.source.server.what)
            self.decoders = self._decoders()
            staged = Staged(list(self.sources),
                            None if self.decoders is None else self._convert)
            if self.decoders is None:
                self.session = self.source._open(len(self.plans), autocommit=False)
            upto = self._stage(staged, work)
            position = {"slot": self.slot, "lsn": wire.format_lsn(upto)}
            acknowledge = self._acknowledger(upto)
            snapshot = self.truncated_at >= 0
            if not staged.total and not snapshot:
                self._end_session()
                shutil.rmtree(work, ignore_errors=True)
                return ChangeSet(schema.empty_table().to_reader(), None, position,
                                 acknowledge, close=close)
            if self.session is None:
                upserts, deleted = self._local_result(work, schema, snapshot)
            else:
                connection, cursor = self.session
                self._keep_last(cursor)
                deleted = None if snapshot else self._deleted_keys(connection, work)
                upserts = self._upserts(connection, cursor, schema)
        except BaseException:
            self._end_session()
            close()
            raise
        warnings = [f"{self.dataset}: a TRUNCATE of {self.table.schema}.{self.table.name} "
                    "was read: this version is the table as it was after it"] if snapshot else []
        return ChangeSet(upserts, deleted, position, acknowledge, warnings=warnings,
                         snapshot=snapshot, close=close)

    def _end_session(self) -> None:
        if self.spill is not None:
            with contextlib.suppress(Exception):
                self.spill.close()
            self.spill = None
        if self.session is not None:
            connection, cursor = self.session
            with contextlib.suppress(Exception):
                cursor.close()
            self.source._finish(connection)
            self.session = None

    def _decoders(self) -> list[binary.Decoder] | None:
        """The binary decoders of the declared columns, when the server can send binary
        values (14 and later) and every declared column has one (``cdc_binary``)."""
        assert self.stream is not None
        if self.stream.connection.info.server_version < 140000:
            return None
        found = [binary.decoder(src, self.live[src], plan)
                 for src, plan in zip(self.sources, self.plans, strict=True)]
        decoders = [d for d in found if d is not None]
        return decoders if len(decoders) == len(found) else None

    def _convert(self, index: int, values: pa.Array) -> pa.Array:
        """Column ``index``'s binary values as a table read gives them (its plan's check)."""
        assert self.decoders is not None
        plan = self.plans[index]
        try:
            return _apply(plan, self.decoders[index](values))
        except BadValue as exc:
            raise SourceError(f"{self.dataset}: column {plan.field.name} {exc}",
                              public=f"{self.dataset}: column {plan.field.name}: a value "
                                     "does not fit its declared type") from None

    # -- reading the slot ------------------------------------------------------------

    def _stage(self, staged: Staged, work: Path) -> int:
        """Decode the slot's changes into the staging table (or the local spill file); the
        position read up to."""
        if self.session is not None:
            cursor = self.session[1]
            for setting in _READ_SESSION:
                self._run(cursor, setting)
            cursor.execute("create temp table _ferry_cdc_stage (" + ", ".join(
                f"c{i} text" for i in range(len(staged.columns))) +
                ", _ferry_seq bigint, _ferry_op text, _ferry_xid bigint) on commit drop")
        self.work = work
        stream = self.stream
        assert stream is not None
        options = self.options = {"proto_version": "1", "publication_names": self.slot}
        if self.decoders is not None:
            options["binary"] = "true"
        streaming = STREAMING and stream.connection.info.server_version >= 140000
        if streaming:  # large transactions sent while the server decodes (cdc_streamed)
            options.update(proto_version="2", streaming="on")
        try:
            for setting in _TEXT_SESSION:
                stream.setting(setting)
            if streaming and STREAM_MEMORY:
                stream.setting(f"set logical_decoding_work_mem = '{STREAM_MEMORY}'")
            upto = stream.flushed()
            stream.start(self.start, options)
            self._decode(stream.messages(upto), staged)
            stream.close()  # the stream ended: nothing waits on the server while publishing
        except psycopg.Error as exc:
            raise self.source.server.error(
                exc, f"reading the changes of {self.dataset} (slot {self.slot}) from") from None
        if staged.pending():
            self._ingest(staged)
        self.truncated_at = self.streamed.truncated_at()
        return upto

    def _decode(self, messages: Iterator[bytes], staged: Staged) -> None:
        layouts: dict[int, list[int]] = {}  # our relation -> its position of each column
        others: dict[int, str] = {}  # relations the publication should not have sent
        skip = False
        seq = 0
        values, add, row_change = self._values, staged.add, wire.row_change
        simple, simple_seqs = staged.simple, staged.simple_seqs
        gone, gone_seqs = staged.gone, staged.gone_seqs
        # how an insert, an update keeping the key or a delete of our relation starts
        insert = update = delete_key = delete_row = b"-"
        # the same in a streamed chunk, after the tag and the xid
        chunk_new = chunk_key = chunk_row = b"-"
        keys = [self.sources.index(k) for k in self.keys]
        streamed = self.streamed
        top_of, in_chunk, strip = streamed.top_of, wire.IN_CHUNK, wire.strip_xid
        block = xid = 0  # the streamed chunk's transaction, the message's (sub)transaction
        for data in messages:
            if block and data[0] in in_chunk:
                tag, rest = data[0], data[5:10]
                if rest == chunk_new and (tag == 0x49 or tag == 0x55):  # I, U: in bulk
                    seq += 1
                    simple.append(data)
                    simple_seqs.append(seq)
                    if len(simple) >= STAGE_ROWS:
                        self._ingest(staged)
                    continue
                if tag == 0x44 and rest in (chunk_key, chunk_row):  # D
                    seq += 1
                    gone.append(data)
                    gone_seqs.append(seq)
                    if len(gone) >= STAGE_ROWS:
                        self._ingest(staged)
                    continue
                xid, data = strip(data)
                top_of[xid] = block
            head = data[:6]
            if head in (update, insert):
                if skip:  # an insert or an update that kept the key: decoded in bulk
                    continue
                seq += 1
                simple.append(data)
                simple_seqs.append(seq)
                if len(simple) >= STAGE_ROWS:
                    self._ingest(staged)
                continue
            if head in (delete_key, delete_row):
                if skip:
                    continue
                seq += 1
                gone.append(data)
                gone_seqs.append(seq)
                if len(gone) >= STAGE_ROWS:
                    self._ingest(staged)
                continue
            change = row_change(data)  # rows one by one, without message objects
            if change is not None:
                if skip:
                    continue
                _, relation_id, old, old_kind, new = change
                positions = layouts.get(relation_id)
                if positions is None:
                    raise SourceError(
                        f"{self.dataset}: publication {self.slot} sent changes of "
                        f"{others.get(relation_id, 'an unknown table')}, not of "
                        f"{self.table.schema}.{self.table.name}; run ferry run --full "
                        "(it sets the publication to the table again)", public=True)
                seq += 1
                if old is None:  # an insert, or an update that kept the key
                    assert new is not None
                    add(seq, "U", values(new, positions), xid)
                elif new is None:  # a delete
                    add(seq, "D", values(old, positions, key_only=True), xid)
                    continue
                else:  # an update with the old key (K) or row (O)
                    if old_kind == "O":
                        new = tuple(o if n is wire.UNCHANGED else n
                                    for o, n in zip(old, new, strict=True))
                    before = values(old, positions, key_only=True)
                    after = values(new, positions)
                    if any(before[k] != after[k] for k in keys):  # the key changed
                        add(seq, "D", before, xid)
                        seq += 1
                    add(seq, "U", after, xid)
                if staged.pending() >= STAGE_ROWS:
                    self._ingest(staged)
                continue
            match wire.decode(data):
                case wire.Begin(final_lsn=final_lsn):
                    skip = final_lsn < self.start  # the head has this transaction
                    self._batch_of(staged, 0)
                case wire.Commit():
                    self.transactions += 0 if skip else 1
                case wire.StreamStart(xid=top):
                    block, skip = top, False
                    self._batch_of(staged, top)
                case wire.StreamStop():
                    block = xid = 0
                case wire.StreamCommit(xid=top, commit_lsn=commit_lsn):
                    if commit_lsn >= self.start:  # else the head has it (not dropped)
                        if self.batch_top == top and staged.pending():
                            self._ingest(staged)  # a value that does not fit stops it now
                        streamed.commit(top)
                        self.transactions += 1
                case wire.StreamAbort(xid=top, subxid=subxid):
                    streamed.abort(top, subxid)
                case wire.Relation() as relation:
                    if (relation.namespace, relation.name) == (self.table.schema,
                                                               self.table.name):
                        self._decode_simple(staged)  # with the layout they came with
                        layouts[relation.relation_id] = [
                            position for position, _ in self._layout(relation)]
                        ours = relation.relation_id.to_bytes(4, "big")
                        insert, update = b"I" + ours + b"N", b"U" + ours + b"N"
                        delete_key, delete_row = b"D" + ours + b"K", b"D" + ours + b"O"
                        chunk_new, chunk_key, chunk_row = ours + b"N", ours + b"K", ours + b"O"
                        self.layout = (len(relation.columns), layouts[relation.relation_id])
                    else:
                        others[relation.relation_id] = f"{relation.namespace}.{relation.name}"
                case wire.Truncate(relation_ids=ids) if not skip and set(layouts) & set(ids):
                    seq += 1
                    streamed.truncates.append((seq, xid))

    def _batch_of(self, staged: Staged, top: int) -> None:
        """The staged changes are about to come from transaction ``top`` (0: transactions
        sent at their commit): a batch holds one streamed transaction's changes or none,
        so a value of an aborted one that does not fit never stops the run."""
        if top != self.batch_top:
            if staged.pending():
                self._ingest(staged)
            self.batch_top = top

    def _layout(self, relation: wire.Relation) -> list[tuple[int, int]]:
        """(position in the relation's tuples, staged index) of each declared column; a
        declared column missing or of another type stops the run."""
        names = [c.name for c in relation.columns]
        for source in self.sources:
            if source not in names:
                raise SourceError(
                    f"{self.dataset}: column {source} was dropped from "
                    f"{self.table.schema}.{self.table.name} while changes were pending; "
                    "update the model (nothing was published)", public=True)
        for column in relation.columns:
            live = self.table.columns.get(column.name)
            if column.name in self.sources and live is not None and live[0] != column.type_oid:
                raise SourceError(
                    f"{self.dataset}: column {column.name} changed type at the source "
                    f"(now {live[1]}) while changes were pending; read it again with "
                    "ferry run --full once the model matches (nothing was published)",
                    public=True)
        key = [c.name for c in relation.columns if c.flags & 1]
        if relation.replica_identity != "f" and not set(self.keys) <= set(key):
            raise SourceError(
                f"{self.dataset}: the table's replica identity ({', '.join(key) or 'none'}) "
                f"does not hold the declared primary key ({', '.join(self.keys)}); declare the "
                "table's primary key or set REPLICA IDENTITY FULL", public=True)
        return [(names.index(source), index) for index, source in enumerate(self.sources)]

    def _values(self, values: wire.Tuple, positions: list[int], *,
                key_only: bool = False) -> list[bytes | None]:
        """The staged columns of a tuple (the value's bytes, None for NULL)."""
        try:
            out = [values[position] for position in positions]
        except IndexError:
            raise SourceError(f"{self.dataset}: a change has fewer columns than its "
                              "relation message says") from None
        if wire.UNCHANGED in out:  # by identity: C speed
            if not key_only:
                index = out.index(wire.UNCHANGED)
                raise SourceError(
                    f"{self.dataset}: an update left column {self.sources[index]} "
                    "unchanged and PostgreSQL did not send its (TOASTed) value; run "
                    f"ALTER TABLE {self.table.relation} REPLICA IDENTITY FULL so updates "
                    "carry it, then ferry run --full", public=True)
            out = [None if v is wire.UNCHANGED else v for v in out]
        return out  # type: ignore[return-value]

    def _decode_simple(self, staged: Staged) -> None:
        """The waiting inserts, key-keeping updates and deletes, decoded together."""
        count, positions = self.layout
        top = self.batch_top  # the messages are all of this streamed transaction or none
        for payloads, seqs, op in ((staged.simple, staged.simple_seqs, "U"),
                                   (staged.gone, staged.gone_seqs, "D")):
            if not payloads:
                continue
            try:
                arrays, unchanged = wire.simple_rows(payloads, count, positions,
                                                     10 if top else 6)
            except wire.ProtocolError as exc:
                raise SourceError(f"{self.dataset}: slot {self.slot} sent a change that "
                                  f"cannot be read: {exc}") from None
            if op == "U" and any(unchanged):  # a delete's old key: no other column needed
                column = self.sources[unchanged.index(True)]
                raise SourceError(
                    f"{self.dataset}: an update left column {column} unchanged and "
                    "PostgreSQL did not send its (TOASTed) value; run ALTER TABLE "
                    f"{self.table.relation} REPLICA IDENTITY FULL so updates carry it, "
                    "then ferry run --full", public=True)
            xids = wire.chunk_xids(payloads) if top else [0] * len(payloads)
            if top:
                self.streamed.top_of.update(dict.fromkeys(xids, top))
            staged.chunks.append((arrays, seqs[:], xids, op))
            staged.total += len(payloads)
            payloads.clear()
            seqs.clear()

    def _ingest(self, staged: Staged) -> None:
        crash_point("cdc-streaming")  # the replication stream is open, the slot held
        try:
            self._decode_simple(staged)
            if self.session is None:
                batch = staged.take()
        except SourceError as exc:
            if not self.batch_top:
                raise
            staged.clear(waiting=True)
            self.streamed.failed.setdefault(self.batch_top, exc)  # raised at its commit
            return
        if self.session is None:  # binary values, decoded here: to the local spill file
            if self.spill is None and self.kept_bytes + batch.nbytes <= KEEP_BYTES:
                self.kept.append(batch)
                self.kept_bytes += batch.nbytes
                return
            if self.spill is None:
                self.spill = pq.ParquetWriter(self.work / "changes.parquet", batch.schema)
                for kept in self.kept:
                    self.spill.write_table(kept)
                self.kept, self.kept_bytes = [], 0
            self.spill.write_table(batch)
            return
        try:
            self.session[1].adbc_ingest("_ferry_cdc_stage", staged.take(), mode="append",
                                        temporary=True)
        except adbc_driver_manager.Error as exc:
            raise self.source.server.error(exc, f"staging the changes of {self.dataset} on") \
                from None

    # -- the result -------------------------------------------------------------------

    def _keep_last(self, cursor: Any) -> None:
        """Table ``_ferry_cdc_last``: per key, its last change, cast to the columns' types."""
        index = {name: i for i, name in enumerate(self.sources)}
        keys = ", ".join(f"c{index[k]}" for k in self.keys)
        casts = ", ".join(f"c{i}::{self.table.columns[name][1]} as {ident(name)}"
                          for i, name in enumerate(self.sources))
        self._run(cursor, f"""create temp table _ferry_cdc_last on commit drop as
            select _ferry_op, {casts} from (
                select distinct on ({keys}) * from _ferry_cdc_stage
                where _ferry_seq > {self.truncated_at}{self._kept_xids()}
                order by {keys}, _ferry_seq desc) as last""")

    def _local_result(self, work: Path, schema: pa.Schema, snapshot: bool
                      ) -> tuple[pa.RecordBatchReader, pa.RecordBatchReader | None]:
        """Binary values, decoded here: per key, its last change (DuckDB over the spill
        file, spilling itself past its memory limit), written to a Parquet file of upserts
        and one of deleted keys before the version is published."""
        from dataferry.store.duck import spilling, text

        index = {name: i for i, name in enumerate(self.sources)}
        keys = [index[k] for k in self.keys]
        key_schema = pa.schema([schema.field(i) for i in keys])
        if self.spill is None:
            return self._kept_result(schema, key_schema, keys, snapshot)
        self.spill.close()
        self.spill = None
        with spilling("ferry-cdc-") as db:
            db.execute(f"""create temp table last as
                select * from read_parquet({text(str(work / "changes.parquet"))})
                where _ferry_seq > {self.truncated_at}{self._kept_xids()}
                qualify row_number() over (partition by {", ".join(f"c{i}" for i in keys)}
                                           order by _ferry_seq desc) = 1""")
            upserts = _write(db, "select " + ", ".join(f"c{i}" for i in range(len(schema))) +
                             " from last where _ferry_op = 'U'", schema, work / "upserts.parquet")
            deleted = None if snapshot else _write(
                db, "select " + ", ".join(f"c{i}" for i in keys) +
                " from last where _ferry_op = 'D'", key_schema, work / "deleted.parquet")
        return upserts or schema.empty_table().to_reader(), deleted

    def _kept_result(self, schema: pa.Schema, key_schema: pa.Schema, keys: list[int],
                     snapshot: bool
                     ) -> tuple[pa.RecordBatchReader, pa.RecordBatchReader | None]:
        """``_local_result`` of the changes kept in memory (at most ``KEEP_BYTES``)."""
        if not self.kept:  # a TRUNCATE and nothing after it
            return schema.empty_table().to_reader(), None
        changes = pa.concat_tables(self.kept)
        self.kept = []
        changes = changes.filter(pc.greater(changes["_ferry_seq"], self.truncated_at))
        dropped = self.streamed.dropped()
        if dropped:
            changes = changes.filter(pc.invert(pc.is_in(
                changes["_ferry_xid"], value_set=pa.array(dropped, pa.int64()))))
        names = [f"c{i}" for i in keys]
        last = changes.group_by(names, use_threads=False).aggregate(
            [("_ferry_seq", "max")])["_ferry_seq_max"]
        changes = changes.filter(pc.is_in(changes["_ferry_seq"], value_set=last))
        upserts = changes.filter(pc.equal(changes["_ferry_op"], "U"))
        upserts = pa.Table.from_arrays(
            [upserts.column(i) for i in range(len(schema))], schema=schema)
        deleted = None
        if not snapshot:
            gone = changes.filter(pc.equal(changes["_ferry_op"], "D"))
            if gone.num_rows:
                deleted = pa.Table.from_arrays([gone.column(i) for i in keys],
                                               schema=key_schema).to_reader()
        return upserts.to_reader(), deleted

    def _kept_xids(self) -> str:
        """SQL (after a where clause) leaving out the changes of streamed transactions
        that did not commit in the run (``cdc_streamed``)."""
        dropped = self.streamed.dropped()
        return "" if not dropped else \
            f" and _ferry_xid not in ({', '.join(str(x) for x in dropped)})"

    def _run(self, cursor: Any, query: str) -> None:
        try:
            cursor.execute(query)
        except adbc_driver_manager.Error as exc:
            raise self.source.server.error(exc, f"reading the changes of {self.dataset} on") \
                from None

    def _select(self, plans: list[ColumnPlan], op: str) -> str:
        """The rows of ``op`` through ``plans``, with the array depth checks a table read
        selects after them (see ``PostgresSource.read_table``)."""
        exprs = [f"{p.expr} as {ident(p.field.name)}" for p in plans]
        exprs += [f"array_ndims({ident(self.sources[self.plans.index(p)])})"
                  for p in plans if p.dims_check]
        return (f"select {', '.join(exprs)} from _ferry_cdc_last "
                f"where _ferry_op = {literal(op)}")

    def _deleted_keys(self, connection: Any, work: Path) -> pa.RecordBatchReader | None:
        """The deleted keys, spilled to a Parquet file (the upserts stream afterwards on
        the same session); None when there are none."""
        plans = [self.plans[self.sources.index(k)] for k in self.keys]
        schema = pa.schema([p.field for p in plans])
        path = work / "deleted.parquet"
        rows = 0
        cursor = connection.cursor()
        try:
            self._run(cursor, self._select(plans, "D"))
            with pq.ParquetWriter(path, schema) as writer:
                for batch in cursor.fetch_record_batch():
                    arrays = [_apply(p, batch.column(i)) for i, p in enumerate(plans)]
                    writer.write_table(pa.Table.from_batches(
                        [pa.RecordBatch.from_arrays(arrays, schema=schema)]))
                    rows += batch.num_rows
        except adbc_driver_manager.Error as exc:
            raise self.source.server.error(exc, f"reading the changes of {self.dataset} on") \
                from None
        finally:
            cursor.close()
        if not rows:
            return None
        return _parquet_reader(path)

    def _upserts(self, connection: Any, cursor: Any, schema: pa.Schema) -> pa.RecordBatchReader:
        self._run(cursor, self._select(self.plans, "U"))
        stream = cursor.fetch_record_batch()
        batches = self.source._batches(self.request, self.plans, stream, schema,
                                       (connection, cursor))
        return pa.RecordBatchReader.from_batches(schema, batches)

    def _acknowledger(self, upto: int) -> Callable[[], None]:
        def acknowledge() -> None:
            """Confirm the run's position with a status update on a new stream: the slot
            releases the WAL before it (``SlotStream.confirm``). If that fails, the slot
            is advanced instead (``pg_replication_slot_advance``, which decodes the WAL
            again). A failure of both loses nothing (the next run re-reads from the
            head's position and skips what the head has)."""
            try:
                stream = SlotStream(self.source.server.connect_replication(), self.slot,
                                    self.source.server.what)
                try:
                    stream.confirm(upto, self.options)
                finally:
                    stream.close()
                return
            except Exception:  # the slot is advanced below instead
                pass
            with contextlib.suppress(Exception), self.source.server.connect() as connection:
                connection.execute(
                    "select pg_replication_slot_advance(%s, %s::pg_lsn) from "
                    "pg_replication_slots where slot_name = %s and confirmed_flush_lsn < "
                    "%s::pg_lsn", (self.slot, wire.format_lsn(upto), self.slot,
                                   wire.format_lsn(upto)))

        return acknowledge


def _write(db: Any, query: str, schema: pa.Schema, path: Path) -> pa.RecordBatchReader | None:
    """``query``'s rows with ``schema``'s exact types (DuckDB has no fixed-size binary, no
    field metadata) in the Parquet file ``path``; a reader of it, None when it has none."""
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for batch in db.sql(query).to_arrow_reader(65_536):
            writer.write_batch(pa.RecordBatch.from_arrays(
                [batch.column(i).cast(schema.field(i).type) for i in range(len(schema))],
                schema=schema))
            rows += batch.num_rows
    return _parquet_reader(path) if rows else None


def _parquet_reader(path: Path) -> pa.RecordBatchReader:
    handle = pq.ParquetFile(path)
    return pa.RecordBatchReader.from_batches(handle.schema_arrow, handle.iter_batches())
