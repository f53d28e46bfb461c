"""Running one job on the agent: resolve secrets here, read the source, upload, report.

An ingest reads the source with the same connector as on the hub (its ``${env:...}`` and
``${file:...}`` references resolved from this machine), writes the rows as Parquet files
of at most ``FILE_ROWS`` rows (or ``FILE_BYTES``) in a scratch directory, uploads each (the hub hashes it as
it arrives) and reports the files' hashes with the live columns and the source's state.
A ``deliver`` job clones the dataset from the hub into the agent's own store (the
replication protocol: every byte verified against the dataset id the hub sent) and
applies it to the sink with its ``_ferry_loads`` ledger. A ``transform`` job (SQL only)
clones its inputs the same way, at the versions the hub pinned, runs the SQL on DuckDB
and uploads the output like an ingest's files. A ``check`` job reads only the
columns (``ferry check --connect``). While a job runs, a
thread renews its lease; the lease lost (``LostJob``), the job is dropped unreported.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataferry.agent.client import HubClient, LostJob
from dataferry.agent.wire import columns_to_json, request_of, source_of
from dataferry.connectors.drift import check_drift
from dataferry.connectors.registry import source_class
from dataferry.errors import AuthError, FerryError

if TYPE_CHECKING:
    from dataferry.store.store import Store

FILE_ROWS = 1_000_000
FILE_BYTES = 64 * 1024 * 1024
"""A file is closed at ``FILE_ROWS`` rows or about ``FILE_BYTES`` bytes, whichever first
(the hub takes uploads up to 512 MiB: ``server.body_limit``)."""


def run_job(client: HubClient, job: dict[str, Any], model_root: Path, home: Path) -> str:
    """Run ``job`` and report it; returns how it ended (``done``, ``failed``, ``lost``)."""
    renewing = _LeaseRenewal(client, job)
    renewing.start()
    try:
        try:
            if job["kind"] == "ingest":
                result = _ingest(client, job, model_root)
            elif job["kind"] == "deliver":
                result = _deliver(client, job, home, model_root)
            elif job["kind"] == "transform":
                result = _transform(client, job, home)
            elif job["kind"] == "check":
                result = _check(job, model_root)
            else:
                raise FerryError(f"this agent cannot run {job['kind']} jobs (upgrade it)",
                                 public=True)
        except (LostJob, AuthError):
            raise
        except FerryError as error:
            client.report(job, ok=False, error=str(error), result={
                "public": error.public, "transient": error.transient})
            return "failed"
        except Exception as error:  # a bug: say what, not the values it held
            client.report(job, ok=False, error=f"the agent failed: {type(error).__name__}",
                          result={"public": f"the agent failed: {type(error).__name__}"})
            return "failed"
        client.report(job, ok=True, result=result)
        return "done"
    except LostJob:
        return "lost"
    finally:
        renewing.stop()


def _connector(job: dict[str, Any], model_root: Path) -> Any:
    payload = job["payload"]
    source = source_of(payload)
    return source_class(source.kind)(payload["source_name"], source, model_root)


def _ingest(client: HubClient, job: dict[str, Any], model_root: Path) -> dict[str, Any]:
    payload = job["payload"]
    request = request_of(payload)
    connector = _connector(job, model_root)
    scratch = Path(tempfile.mkdtemp(prefix="ferry-agent-"))
    try:
        live = connector.columns(request.dataset, request.spec)
        check_drift(request.dataset, request.spec, live)  # fail here, before reading
        read = connector.read(request)
        files, rows = _upload(client, job, read.reader, scratch, "read")
        return {"files": files, "rows": rows, "columns": columns_to_json(live),
                "schema": base64.b64encode(read.reader.schema.serialize().to_pybytes()).decode(),
                "state": read.state(), "warnings": list(read.warnings),
                "unique_key": read.unique_key}
    finally:
        connector.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _upload(client: HubClient, job: dict[str, Any], reader: pa.RecordBatchReader,
            scratch: Path, verb: str) -> tuple[list[dict[str, Any]], int]:
    """Write ``reader`` as Parquet files in ``scratch`` and upload each as it is closed
    (the hub hashes it as it arrives); returns the files' entries and the rows."""
    files, rows = [], 0
    for path, count in _write_files(reader, scratch):
        rows += count
        sha256 = client.upload(job, path)
        files.append({"name": path.name, "sha256": sha256, "rows": count})
        client.log(job, f"{verb} {rows} rows, uploaded {len(files)} file(s)")
        path.unlink()
    return files, rows


def _write_files(reader: pa.RecordBatchReader, scratch: Path) -> Any:
    """Yield (path, rows) of Parquet files of at most ``FILE_ROWS`` rows or about
    ``FILE_BYTES`` (each batch is a row group, written as it comes: bounded memory)."""
    number, writer, rows, path = 0, None, 0, scratch / "part-00000.parquet"
    for batch in reader:
        if writer is None:
            path = scratch / f"part-{number:05d}.parquet"
            writer, rows = pq.ParquetWriter(path, reader.schema), 0
        writer.write_batch(batch)
        rows += batch.num_rows
        if rows >= FILE_ROWS or path.stat().st_size >= FILE_BYTES:
            writer.close()
            yield path, rows
            writer, number = None, number + 1
    if writer is not None:
        writer.close()
        yield path, rows
    elif number == 0:  # no rows at all: one empty file carries the schema
        pq.write_table(reader.schema.empty_table(), path)
        yield path, 0


def _check(job: dict[str, Any], model_root: Path) -> dict[str, Any]:
    payload = job["payload"]
    if "sink" in payload:
        return _check_sink(payload, model_root)
    request = request_of(payload)
    connector = _connector(job, model_root)
    try:  # the hub compares them with the model (``ferry check --connect``)
        return {"columns": columns_to_json(connector.columns(request.dataset, request.spec))}
    finally:
        connector.close()


def _check_sink(payload: dict[str, Any], model_root: Path) -> dict[str, Any]:
    """Open the sink and read its ledger for each need, as ``ferry check --connect`` does
    for a sink the hub reaches; its error (never a secret) says why it cannot."""
    from pydantic import TypeAdapter

    from dataferry.connectors.registry import sink_class
    from dataferry.model.spec import Sink

    spec = TypeAdapter(Sink).validate_python(payload["sink"])
    sink = sink_class(spec.kind)(str(payload["consumer"]), spec, model_root)
    try:
        applied = {table: sink.applied_version(ref, table) for ref, table in payload["tables"]}
    finally:
        sink.close()
    return {"applied": applied}


def _deliver_derived(client: HubClient, job: dict[str, Any],
                     model_root: Path) -> dict[str, Any]:
    """A need with ``mask:``: the hub derives the masked rows from the version the sink
    has (``agent.derived``); fetch each step's file, check its hash and apply it with the
    sink's ledger, in order. The dataset itself, and the mask key, never come here."""
    from pydantic import TypeAdapter

    from dataferry.agent.derived import step_delivery
    from dataferry.connectors.registry import sink_class
    from dataferry.model.spec import Sink

    payload = job["payload"]
    consumer, ref, table = str(payload["consumer"]), str(payload["dataset"]), str(payload["table"])
    spec = TypeAdapter(Sink).validate_python(payload["sink"])
    sink = sink_class(spec.kind)(consumer, spec, model_root)
    scratch = Path(tempfile.mkdtemp(prefix="ferry-agent-"))
    try:
        previous = sink.applied_version(ref, table)
        derived = client.derive(job, previous)
        client.log(job, f"{ref}: the hub derived {len(derived['steps'])} masked step(s) from "
                        f"version {previous} to {derived['version']}")
        rows = 0
        for step in derived["steps"]:
            path = client.download(job, str(step["name"]), scratch / str(step["name"]),
                                   str(step["sha256"]))
            with pa.OSFile(str(path), "rb") as source:
                rows += sink.deliver(step_delivery(step, consumer, pa.ipc.open_stream(source)))
            path.unlink()
    finally:
        sink.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return {"table": table, "version": derived["version"], "previous": derived["previous"],
            "rows": rows, "warnings": list(derived["warnings"])}


class _LeaseRenewal:
    """Renews the job's lease every third of it while the job runs."""

    def __init__(self, client: HubClient, job: dict[str, Any]) -> None:
        self.client, self.job = client, job
        self.every = max(1.0, float(job.get("lease_seconds", 60)) / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ferry-agent-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.client.log(self.job, None)
            except LostJob:
                return
            except FerryError:  # the hub is unreachable for a moment: try again
                continue

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _deliver(client: HubClient, job: dict[str, Any], home: Path,
             model_root: Path) -> dict[str, Any]:
    """Clone (or pull) the dataset from the hub into this agent's store, every byte
    verified against the dataset id the hub sent, then apply it to the sink in the
    network with the sink's own ``_ferry_loads`` ledger (exactly once, as on the hub)."""
    from pydantic import TypeAdapter

    from dataferry.connectors.registry import sink_class
    from dataferry.engine.deliver import deliver_into
    from dataferry.model.spec import Need, Sink

    payload = job["payload"]
    if payload.get("derived"):
        return _deliver_derived(client, job, model_root)
    ref = str(payload["dataset"])
    store = _clones(client, job, home, [ref], {ref: str(payload["dataset_id"])})
    spec = TypeAdapter(Sink).validate_python(payload["sink"])
    need = Need.model_validate(payload["need"])
    sink = sink_class(spec.kind)(payload["consumer"], spec, model_root)
    try:
        done = deliver_into(sink, str(payload["consumer"]), need, store.dataset(ref),
                            str(payload["table"]), home=home, full=bool(payload["full"]))
    finally:
        sink.close()
    return {"table": done.table, "version": done.version, "previous": done.previous,
            "rows": done.rows, "warnings": list(done.warnings)}


def _transform(client: HubClient, job: dict[str, Any], home: Path) -> dict[str, Any]:
    """A SQL transform: clone each input at the version the hub pinned (every byte
    verified against the dataset id it sent), run the SQL on DuckDB as the hub would
    (``engine.transform.sql_output``: UTC, lock-down, spilling) and upload the output; the
    hub publishes and signs it."""
    from dataferry.engine.transform import SqlInput, _decoded, _input_rows, sql_output
    from dataferry.store.batching import row_width
    from dataferry.store.dataset import declared_types

    payload = job["payload"]
    store = _clones(client, job, home, [str(given["ref"]) for given in payload["inputs"]],
                    {str(given["ref"]): str(given["dataset_id"]) for given in payload["inputs"]})
    inputs, width = [], 0.0
    for given in payload["inputs"]:
        dataset = store.dataset(str(given["ref"]))
        version = dataset.version(int(given["version"]))
        input_width = row_width(dataset.path, dataset.active_files(version.number))
        width += input_width
        declared = declared_types(version.manifest.schema)
        reader = dataset.reader(version, batch_size=_input_rows(input_width))
        inputs.append(SqlInput(dataset.ref, _decoded(reader, declared), declared, set()))
    scratch = Path(tempfile.mkdtemp(prefix="ferry-agent-"))
    try:
        with sql_output(str(payload["dataset"]), str(payload["sql"]),
                        [str(r) for r in payload["refs"]], inputs, width) as data:
            files, rows = _upload(client, job, data, scratch, "computed")
            schema = data.schema
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"files": files, "rows": rows,
            "schema": base64.b64encode(schema.serialize().to_pybytes()).decode()}


def _clones(client: HubClient, job: dict[str, Any], home: Path, refs: list[str],
            ids: dict[str, str]) -> Store:
    """The agent's store, with ``refs`` cloned (or pulled) from the hub, each verified
    against the dataset id ``ids`` names."""
    from dataferry.replication.peer import Peer
    from dataferry.replication.sync import sync
    from dataferry.store.store import Store

    assert client.enrolled is not None
    store = Store(home / "store", home)
    for ref in refs:
        with Peer(client.hub, ref, client.enrolled.credential) as peer:
            synced = sync(peer, store.dataset(ref), pinned=ids[ref])
        client.log(job, f"{ref}: clone at version {synced.head} ({synced.files_fetched} "
                        "file(s) fetched, every byte verified)")
    return store
