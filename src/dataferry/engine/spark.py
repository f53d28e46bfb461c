"""Transform on Spark: a SQL transformer planned on a platform with ``engine: spark``.

The same contract as ``engine.transform`` (DuckDB), step for step: the inputs' latest
versions are resolved and pinned, skipped when neither they nor the definition changed,
verified before they are read, masked and approved as governance says; the output is
published through ``store.publish`` (checked, keyed difference, signed manifest with
lineage and definition, events), so a version computed on Spark is indistinguishable
from one computed on DuckDB.

What differs is where the rows go. Each input version's Parquet files are read by Spark
itself (``spark_inputs``); the SQL, written in DuckDB's dialect, is carried over by
sqlglot (``spark_sql``; ``ferry check`` reports a query it cannot carry); Spark writes
the result as Parquet into the run's work directory, which is read back here in bounded
batches into the publication: no ``collect()`` of the whole output on the driver.

The work directory is ``<home>/spark-work/<run>`` (``FERRY_SPARK_WORK`` overrides the
parent): on a cluster it must be on storage the executors and this process share, as
the store itself must be. It is removed when the transform ends.

Python transformers do not run on Spark: a Python transformer gets whole Arrow tables of
its inputs, and Spark would hand it partitions, which changes what most functions
compute. The planner never sends one there by size, and ``ferry check`` refuses one
placed there by ``platform:`` (``spark-unsupported``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from dataferry.engine.context import RunContext
from dataferry.engine.definition import transformer_definition
from dataferry.engine.deliver import _masker, mask_key
from dataferry.engine.spark_inputs import input_frame
from dataferry.engine.spark_session import spark_session
from dataferry.engine.spark_sql import NotCarried, to_spark
from dataferry.engine.transform import (
    TransformError,
    TransformResult,
    _counted,
    _input_mask,
    _read_sql,
    _resolve_inputs,
    _why,
)
from dataferry.errors import StoreError
from dataferry.metadata.runs import VersionRef
from dataferry.model.reads import view_names
from dataferry.model.spec import Transformer
from dataferry.store.batching import MAX_BATCH_ROWS
from dataferry.store.delete_limit import DeleteRefused
from dataferry.store.primary_key import KeyViolation
from dataferry.store.publish import publish
from dataferry.store.quality import QualityError
from dataferry.store.verify import verify_for_reading

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def transform_on_spark(context: RunContext, ref: str, platform: str,
                       on_rows: Callable[[int], None] | None = None, *,
                       pin: Callable[[list[VersionRef]], object] | None = None,
                       full: bool = False) -> TransformResult:
    """Compute transformer ``ref`` on Spark platform ``platform`` and publish it (the
    contract of ``engine.transform.transform``; see the module docstring)."""
    entry = context.index.datasets[ref]
    spec = entry.spec
    assert isinstance(spec, Transformer)
    if spec.python is not None:
        raise TransformError(
            f"transformer {ref} is Python ({spec.python}) and platform {platform} runs "
            "Spark: a Python transformer gets whole tables, Spark hands partitions; run it "
            "on a DuckDB platform (platform: local)", public=True)
    sql = spec.sql if spec.sql is not None else _read_sql(context, entry.team,
                                                           spec.sql_file or "")
    spark_sql = to_spark(sql)
    if isinstance(spark_sql, NotCarried):
        raise TransformError(f"transformer {ref} cannot run on Spark platform {platform}: "
                             f"{spark_sql.reason}", public=True)
    current = _resolve_inputs(context, list(spec.inputs), pin)
    numbers = dict(current)
    output = context.store.dataset(ref)
    head = output.head() if output.exists() else None
    definition = transformer_definition(context.index, context.root, ref)
    reason = _why(head.manifest if head is not None else None, current, definition, spec, full,
                  lambda r, old, new: context.store.dataset(r).same_rows(old, new))
    if reason is None:
        return TransformResult(ref, None)
    session = spark_session(platform, context.ecosystem.platforms[platform])
    views = view_names(list(spec.inputs))
    lineage: list[dict[str, Any]] = []
    with _work_directory(context.store.home) as work:
        for input_ref in spec.inputs:
            masked = _input_mask(context, ref, input_ref)
            dataset = context.store.dataset(input_ref)
            version = dataset.version(numbers[input_ref])
            verify_for_reading(dataset, version.number)  # never compute on altered data
            lineage.append({"ref": input_ref, "version": version.number,
                            "manifest_hash": version.hash})
            mask = _masker(mask_key(context.store.home)) if masked else None
            frame = input_frame(session, dataset, version, masked=masked, mask=mask,
                                work=work)
            frame.createOrReplaceTempView(views[input_ref])
        try:
            result = session.sql(spark_sql)
            written = work / "output"
            result.write.parquet(str(written))
        except Exception as exc:  # pyspark's and py4j's errors share no base class
            raise _spark_failed(ref, exc) from None
        finally:
            for view in views.values():
                session.catalog.dropTempView(view)
        data = _counted(_output(written, result), on_rows)
        try:
            published = publish(output, spec, data, keys=context.store.keys, lineage=lineage,
                                max_delete_ratio=context.max_delete_ratio(spec),
                                definition=definition.to_json(), by_key=True)
        except (QualityError, KeyViolation, DeleteRefused):
            raise
        except StoreError as exc:
            suffix = f" (the output of transformer {ref} does not match its declared columns)"
            raise StoreError(f"{exc}{suffix}", public=None if exc.public is None
                             else exc.public + suffix) from None
    return TransformResult(ref, published, f"{reason}; on Spark")


@contextlib.contextmanager
def _work_directory(home: Path) -> Iterator[Path]:
    """A fresh directory for one transform's staged inputs and output, removed after."""
    parent = Path(os.environ.get("FERRY_SPARK_WORK") or home / "spark-work")
    parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="run-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _output(written: Path, result: DataFrame) -> pa.RecordBatchReader:
    """Spark's output files as one stream of bounded batches, file by file."""
    import pyarrow.parquet as pq

    files = sorted(p for p in written.glob("*.parquet") if not p.name.startswith(("_", ".")))
    schema = (pq.read_schema(files[0]) if files else result.limit(0).toArrow().schema)
    schema = schema.remove_metadata()

    def batches() -> Iterator[pa.RecordBatch]:
        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(MAX_BATCH_ROWS):
                yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _spark_failed(ref: str, exc: Exception) -> TransformError:
    """A failure of the query on Spark. Spark's text may quote a value of the inputs (a
    failed cast, an overflow): the public text names its error class only."""
    text = str(exc).strip()
    kind = getattr(exc, "getCondition", None)
    condition = kind() if callable(kind) else None
    label = condition or type(exc).__name__
    return TransformError(f"{ref}: the transformer's SQL failed on Spark: {text}",
                          public=f"{ref}: the transformer's SQL failed on Spark ({label})")
