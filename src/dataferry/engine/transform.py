"""Transform: compute a derived dataset from the latest versions of its inputs, on DuckDB.

SQL transformers see each input as a table named after its dataset (``customers`` for
``crm.customers``; ``team_dataset`` when two inputs share a name); Python transformers
(``module:function``, the module found in the team's folder) get one Arrow table per
input, in the order of ``inputs:``, and return an Arrow table. The output is checked
against the declared columns and checks like any publication, and its manifest records
which input versions it was computed from (lineage). Inputs are read only after their
version verifies (signatures, chain, file hashes): a tampered input fails the transform.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from dataferry.engine.context import RunContext
from dataferry.errors import FerryError, StoreError
from dataferry.store.dataset import declared_types
from dataferry.store.duck import spilling
from dataferry.store.publish import Published, publish
from dataferry.store.quality import QualityError
from dataferry.store.storage import decode_batch
from dataferry.store.verify import verify_for_reading


class TransformError(FerryError):
    """A transformer's SQL or Python failed."""


@dataclass(frozen=True)
class TransformResult:
    ref: str
    published: Published | None  # None: its inputs have not changed since the last run


def _view_names(inputs: list[str]) -> dict[str, str]:
    names = [ref.partition(".")[2] for ref in inputs]
    return {ref: (name if names.count(name) == 1 else ref.replace(".", "_"))
            for ref, name in zip(inputs, names, strict=True)}


def transform(context: RunContext, ref: str,
              on_rows: Callable[[int], None] | None = None) -> TransformResult:
    entry = context.index.datasets[ref]
    spec = entry.spec
    from dataferry.model.spec import Transformer

    assert isinstance(spec, Transformer)
    current = [(r, context.store.dataset(r).resolve(None).number) for r in spec.inputs]
    output = context.store.dataset(ref)
    head = output.head() if output.exists() else None
    if head is not None and [(i.get("ref"), i.get("version")) for i in head.manifest.lineage] \
            == current:
        return TransformResult(ref, None)  # same inputs: the output would be the same
    lineage: list[dict[str, Any]] = []
    views = _view_names(list(spec.inputs))
    with spilling("ferry-transform-", "1GB") as db:
        tables: list[pa.Table] = []
        for input_ref in spec.inputs:
            dataset = context.store.dataset(input_ref)
            version = dataset.resolve(None)
            verify_for_reading(dataset, version.number)  # never compute on altered data
            lineage.append({"ref": input_ref, "version": version.number,
                            "manifest_hash": version.hash})
            decoded = _decoded(dataset.reader(version),
                               declared_types(version.manifest.schema))
            if spec.python is not None:
                tables.append(decoded.read_all())
            else:
                db.register(views[input_ref], decoded)
        try:
            if spec.python is not None:
                result = _run_python(context, entry.team, spec.python, tables)
                data: pa.RecordBatchReader | pa.Table = result
            else:
                sql = spec.sql if spec.sql is not None else _read_sql(context, entry.team,
                                                                       spec.sql_file or "")
                data = db.sql(sql).to_arrow_reader(65_536)
        except duckdb.Error as exc:
            # DuckDB's text may quote a value of the inputs (a failed cast): the public
            # text names the kind of error only.
            raise TransformError(f"{ref}: the transformer's SQL failed: {exc}",
                                 public=f"{ref}: the transformer's SQL failed "
                                        f"({type(exc).__name__})") from None
        data = _counted(data, on_rows)
        try:
            published = publish(context.store.dataset(ref), spec, data,
                                keys=context.store.keys, lineage=lineage)
        except QualityError:
            raise  # it names the dataset and check, and carries its examples
        except StoreError as exc:
            suffix = f" (the output of transformer {ref} does not match its declared columns)"
            raise StoreError(f"{exc}{suffix}", public=None if exc.public is None
                             else exc.public + suffix) from None
    return TransformResult(ref, published)


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
        module = importlib.import_module(module_name)
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


def _counted(data: pa.RecordBatchReader | pa.Table,
             on_rows: Callable[[int], None] | None) -> pa.RecordBatchReader:
    reader = data.to_reader() if isinstance(data, pa.Table) else data

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            if on_rows is not None:
                on_rows(batch.num_rows)
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches())
