"""Transform: compute a derived dataset from the latest versions of its inputs, on DuckDB.

SQL transformers see each input as a table named after its dataset (``customers`` for
``crm.customers``; ``team_dataset`` when two inputs share a name); Python transformers
(``module:function``, the module found in the team's folder) get one Arrow table per
input, in the order of ``inputs:``, and return an Arrow table. The output is checked
against the declared columns and checks like any publication, and its manifest records
which input versions it was computed from (lineage). Inputs are read only after their
version verifies (signatures, chain, file hashes): a tampered input fails the transform.

Governance holds here too, whether or not ``ferry check`` ran: an input of another team
that does not approve the transformer's team (``allowed_consumers``) is refused, and the
input columns the transformer's team may receive only masked (``policy.transformer_masks``:
the zone rule, and what its own consumers receive only masked),
plus those its ``mask:`` declares, reach the SQL or Python as the keyed hash deliveries
use. SQL runs with DuckDB's file system access off and its configuration locked, so a
query cannot go around its inputs (``read_parquet`` on the store, ``ATTACH``, ``COPY``).
Python transformers are code that runs with the broker's rights; what they get is masked,
but they are trusted like any code the model's reviewers accept.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pyarrow as pa

from dataferry.engine.bind import lock_down, sql_input
from dataferry.engine.context import RunContext
from dataferry.engine.definition import (
    Definition,
    changes,
    transformer_definition,
)
from dataferry.engine.deliver import _masker, mask_key
from dataferry.errors import FerryError, StoreError
from dataferry.metadata.runs import VersionRef
from dataferry.model.policy import approved, masked_input_columns
from dataferry.model.reads import view_names
from dataferry.model.spec import Transformer
from dataferry.store.batching import MAX_BATCH_ROWS, row_width, rows_for
from dataferry.store.dataset import declared_types
from dataferry.store.delete_limit import DeleteRefused
from dataferry.store.duck import spilling
from dataferry.store.gc import reading
from dataferry.store.manifest import Manifest
from dataferry.store.primary_key import KeyViolation
from dataferry.store.publish import Published, publish
from dataferry.store.quality import QualityError
from dataferry.store.storage import decode_batch
from dataferry.store.verify import verify_for_reading


class TransformError(FerryError):
    """A transformer's SQL or Python failed."""


@dataclass(frozen=True)
class TransformResult:
    ref: str
    published: Published | None
    """None: not run, its inputs and definition have not changed since its last version.
    ``published.unchanged``: it ran, and its output is the same as that version's."""
    reason: str = ""
    """Why it ran: "first version", "new input versions: shop.orders 2", "SQL changed",
    "--full"."""


def transform(context: RunContext, ref: str,
              on_rows: Callable[[int], None] | None = None, *,
              pin: Callable[[list[VersionRef]], object] | None = None,
              full: bool = False) -> TransformResult:
    """Compute transformer ``ref`` from the latest versions of its inputs and publish it,
    unless its inputs and its definition (``engine.definition``) are those its latest
    version was computed from; ``full`` runs it regardless.

    ``pin`` records the input versions before they are read (the runner: on its running
    run), so that ``ferry gc`` keeps them until the transform ends.
    """
    due = due_transform(context, ref, pin, full)
    if due.reason is None:
        return TransformResult(ref, None)  # same inputs, same definition: the same output
    spec = due.spec
    lineage: list[dict[str, Any]] = []
    width = 0.0  # of an output row, about: the inputs' widest rows side by side
    inputs: list[SqlInput] = []
    tables: list[pa.Table] = []
    for input_ref, number in due.inputs:
        masked = _input_mask(context, ref, input_ref)
        dataset = context.store.dataset(input_ref)
        version = dataset.version(number)  # the one pinned, not a newer one
        verify_for_reading(dataset, version.number)  # never compute on altered data
        lineage.append({"ref": input_ref, "version": version.number,
                        "manifest_hash": version.hash})
        input_width = row_width(dataset.path, dataset.active_files(version.number))
        width += input_width
        declared = declared_types(version.manifest.schema)
        decoded = _decoded(dataset.reader(version, batch_size=_input_rows(input_width)),
                           declared)
        if masked:
            decoded = _masked(decoded, masked, context.store.home)
        if spec.python is not None:
            tables.append(decoded.read_all())
        else:
            inputs.append(SqlInput(input_ref, decoded, declared, masked))
    if spec.python is not None:
        result = _run_python(context, context.index.datasets[ref].team, spec.python, tables)
        published = publish_output(context, ref, _counted(result, on_rows), lineage,
                                   due.definition)
        return TransformResult(ref, published, due.reason)
    with sql_output(ref, transformer_text(context, ref), list(spec.inputs), inputs,
                    width) as data:
        published = publish_output(context, ref, _counted(data, on_rows), lineage,
                                   due.definition)
    return TransformResult(ref, published, due.reason)


@dataclass
class DueTransform:
    """What ``due_transform`` found: the inputs' versions (pinned), the definition, and why
    the transform must run (None: it need not)."""

    spec: Transformer
    inputs: list[tuple[str, int]]
    definition: Definition
    reason: str | None


def due_transform(context: RunContext, ref: str,
                  pin: Callable[[list[VersionRef]], object] | None, full: bool) -> DueTransform:
    """Resolve (and ``pin``) the latest versions of ``ref``'s inputs and say whether its
    output must be computed again (``_why``)."""
    spec = context.index.datasets[ref].spec
    assert isinstance(spec, Transformer)
    current = _resolve_inputs(context, list(spec.inputs), pin)
    output = context.store.dataset(ref)
    head = output.head() if output.exists() else None
    definition = transformer_definition(context.index, context.root, ref)
    reason = _why(head.manifest if head is not None else None, current, definition, spec, full,
                  lambda r, old, new: context.store.dataset(r).same_rows(old, new))
    return DueTransform(spec, current, definition, reason)


def transformer_text(context: RunContext, ref: str) -> str:
    """The SQL of SQL transformer ``ref`` (its ``sql:``, or its ``sql_file`` read now)."""
    entry = context.index.datasets[ref]
    spec = entry.spec
    assert isinstance(spec, Transformer)
    return spec.sql if spec.sql is not None else _read_sql(context, entry.team,
                                                           spec.sql_file or "")


@dataclass
class SqlInput:
    """One input of a SQL transform: its decoded batches, declared types, masked columns."""

    ref: str
    reader: pa.RecordBatchReader
    declared: dict[str, str]
    masked: set[str]


@contextlib.contextmanager
def sql_output(ref: str, sql: str, refs: list[str], inputs: list[SqlInput],
               width: float) -> Iterator[pa.RecordBatchReader]:
    """The output of SQL transformer ``ref`` over ``inputs`` (each a view named as
    ``view_names(refs)`` says), computed by DuckDB as it is read; on the hub and on a
    gateway agent alike. ``width``: of an output row, about (batching)."""
    views = view_names(refs)
    with spilling("ferry-transform-") as db:
        # Instants are grouped, cast and shown in UTC, whatever the host's zone, as on
        # Spark (engine.spark_session): cast(ordered_at as date) is the UTC day.
        db.execute("set TimeZone = 'UTC'")
        for given in inputs:
            db.register(views[given.ref], _sql_input(given.reader, given.declared,
                                                     given.masked))
        rows = rows_for(width)
        if rows < MAX_BATCH_ROWS:
            # Wide rows: one thread's row group in memory at a time, and less room
            # for DuckDB beside the inputs' and the output's batches (2,000 rows of
            # 1 MiB through a select *: 633 MiB at 256 MB, 583 MiB at 128 MB).
            db.execute("set threads = 1")
            db.execute("set memory_limit = '128MB'")
        lock_down(db)
        try:
            data = _sql_errors_named(ref, db.sql(sql).to_arrow_reader(rows))
        except duckdb.Error as exc:
            raise _sql_failed(ref, exc) from None
        yield data


def publish_output(context: RunContext, ref: str, data: pa.RecordBatchReader,
                   lineage: list[dict[str, Any]], definition: Definition) -> Published:
    """Publish transformer ``ref``'s output ``data`` as its keyed difference, with the
    input versions it was computed from and its definition (the checks gate it)."""
    spec = context.index.datasets[ref].spec
    assert isinstance(spec, Transformer)
    try:
        return publish(context.store.dataset(ref), spec, data, keys=context.store.keys,
                       lineage=lineage, max_delete_ratio=context.max_delete_ratio(spec),
                       definition=definition.to_json(), by_key=True)
    except (QualityError, KeyViolation, DeleteRefused):
        raise  # they name the dataset and what is wrong with the output
    except StoreError as exc:
        suffix = f" (the output of transformer {ref} does not match its declared columns)"
        raise StoreError(f"{exc}{suffix}", public=None if exc.public is None
                         else exc.public + suffix) from None


def _why(head: Manifest | None, current: list[tuple[str, int]], definition: Definition,
         spec: Transformer, full: bool, same_rows: Callable[[str, int, int], bool]) -> str | None:
    """Why the transform must run (None: it need not): what changed since its latest
    version, or ``--full``. ``same_rows(ref, old, new)``: whether input version ``new``
    only compacts ``old`` (``ferry compact``), which changes nothing to compute."""
    if head is None:
        return "first version"
    reasons = changes(head, definition, spec)
    seen = [(i.get("ref"), i.get("version")) for i in head.lineage]
    if seen != current:
        before = dict(seen)
        moved = [f"{r} {n}" for r, n in current
                 if (was := before.get(r)) != n and not (
                     isinstance(was, int) and same_rows(r, was, n))]
        if moved or [r for r, _ in seen] != [r for r, _ in current]:
            reasons.insert(0, "new input versions: " + ", ".join(moved) if moved
                           else "inputs changed")
    if reasons:
        return "; ".join(reasons)
    return "--full" if full else None


def _resolve_inputs(context: RunContext, refs: list[str],
                    pin: Callable[[list[VersionRef]], object] | None) -> list[tuple[str, int]]:
    """The latest version of each input, recorded with ``pin`` while every input's readers'
    lock is held, so that gc cannot drop one between resolving and recording it."""
    with contextlib.ExitStack() as stack:
        for input_ref in sorted(set(refs)):
            stack.enter_context(reading(context.store.dataset(input_ref)))
        current = [(r, context.store.dataset(r).resolve(None).number) for r in refs]
        if pin is not None:
            pin([VersionRef(r, n) for r, n in current])
    return current


def _sql_failed(ref: str, exc: Exception) -> TransformError:
    """A failure of the transformer's SQL. DuckDB's text may quote a value of the inputs
    (a failed cast, an overflow): the public text names the kind of error only."""
    kind = type(exc).__name__
    if isinstance(exc, OSError):  # through Arrow's stream: DuckDB's class leads the text
        head = str(exc).partition(" Error:")[0]
        kind = f"{head} Error" if re.fullmatch(r"[A-Za-z ]{1,40}", head) else "an error"
    return TransformError(f"{ref}: the transformer's SQL failed: {exc}",
                          public=f"{ref}: the transformer's SQL failed ({kind})")


def _sql_errors_named(ref: str, reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``reader`` whose failures name the transformer. DuckDB computes as the output is
    read, so an overflow or a failed cast surfaces while the version is written, as a
    ``duckdb.Error`` or Arrow's OSError, which would read as a bug in dataferry."""

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except (duckdb.Error, OSError) as exc:
            raise _sql_failed(ref, exc) from None

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _input_mask(context: RunContext, ref: str, input_ref: str) -> set[str]:
    """The columns of ``input_ref`` transformer ``ref`` gets masked (``policy.masked_input_columns``).
    Raises ``TransformError`` when the input's owners do not approve its team."""
    team = context.index.datasets[ref].team
    entry = context.index.datasets[input_ref]
    if not approved(entry, team):
        raise TransformError(
            f"transformer {ref} may not read {input_ref}: its owners allow only "
            f"{', '.join(entry.spec.allowed_consumers or []) or 'no other team'} "
            f"(allowed_consumers); ask team {entry.team} to add {team}")
    return masked_input_columns(context.index, ref, input_ref)


def _masked(reader: pa.RecordBatchReader, masked: set[str], home: Path) -> pa.RecordBatchReader:
    """``reader`` with the ``masked`` columns replaced by the keyed hash of deliveries."""
    mask = _masker(mask_key(home))
    schema = pa.schema([pa.field(f.name, pa.string(), f.nullable)
                        if f.name in masked else f for f in reader.schema])

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            arrays = [mask(column) if name in masked else column
                      for name, column in zip(batch.schema.names, batch.columns, strict=True)]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _input_rows(width: float) -> int:
    """Rows per input batch: a quarter of ``batching``'s for wide rows, as DuckDB reads a
    registered stream up to 16 batches ahead (500 rows of 1 MiB peaked at 615 MiB)."""
    rows = rows_for(width)
    return rows if rows >= MAX_BATCH_ROWS else max(1, rows // 4)


def _sql_input(reader: pa.RecordBatchReader, declared: dict[str, str], masked: set[str]
               ) -> pa.RecordBatchReader:
    """``reader``'s batches as the SQL sees them (``bind.sql_input``)."""
    schema = sql_input(pa.RecordBatch.from_pylist([], schema=reader.schema), declared,
                       masked).schema
    return pa.RecordBatchReader.from_batches(
        schema, (sql_input(b, declared, masked) for b in reader))


def _decoded(reader: pa.RecordBatchReader, declared: dict[str, str]) -> pa.RecordBatchReader:
    """The stored batches in the declared types (a function: each input keeps its own types)."""
    schema = decode_batch(pa.RecordBatch.from_pylist([], schema=reader.schema), declared).schema
    return pa.RecordBatchReader.from_batches(schema, (decode_batch(b, declared) for b in reader))


def _read_sql(context: RunContext, team: str, name: str) -> str:
    path = context.root / "teams" / team / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TransformError(f"cannot read sql_file {path}: {exc.strerror}",
                             public=True) from None


def _run_python(context: RunContext, team: str, target: str, tables: list[pa.Table]) -> pa.Table:
    module_name, _, function = target.partition(":")
    folder = str(context.root / "teams" / team)
    sys.path.insert(0, folder)
    try:
        module = _fresh_module(module_name)
        result = getattr(module, function)(*tables)
    except Exception as exc:  # user code may raise anything
        raise TransformError(f"python transformer {target} failed: "
                             f"{type(exc).__name__}: {exc}",
                             public=f"python transformer {target} failed: "
                                    f"{type(exc).__name__}") from None
    finally:
        sys.path.remove(folder)
    if not isinstance(result, pa.Table | pa.RecordBatch):
        raise TransformError(f"python transformer {target} returned {type(result).__name__}, "
                             "not an Arrow table", public=True)
    return result if isinstance(result, pa.Table) else pa.Table.from_batches([result])


def _fresh_module(name: str) -> ModuleType:
    """Module ``name`` as its file reads now: one imported by an earlier run of this
    process (the scheduler, the server) is reloaded, so that an edited function runs as
    edited, as the definition recorded with its output says."""
    importlib.invalidate_caches()
    module = sys.modules.get(name)
    if module is None:
        return importlib.import_module(name)
    return importlib.reload(module)


def _counted(data: pa.RecordBatchReader | pa.Table,
             on_rows: Callable[[int], None] | None) -> pa.RecordBatchReader:
    reader = data.to_reader() if isinstance(data, pa.Table) else data

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            if on_rows is not None:
                on_rows(batch.num_rows)
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches())
