"""Deliveries with ``mask:`` to a sink in a private network: the hub derives them.

A ``mask:`` column is delivered as a keyed hash whose key never leaves the hub
(``engine.deliver.mask_key``), and the values it hides must not enter the network. So the
agent of such a delivery clones nothing (its credential may not clone a dataset only a
masked need reads: ``access``). It tells the hub the version its sink has (the sink's
``_ferry_loads``); the hub computes the delivery exactly as for a sink of its own
(``engine.deliver.deliver_into``: the need's columns and ``where``, the change set since
that version, the masks) into a ``CaptureSink``, which writes each delivery's rows, already
masked, to an Arrow IPC stream file under ``<home>/agent-downloads/<job>/<attempt>``. The
agent downloads each file, checks its SHA-256 and applies it to its sink with the sink's
own ledger, in order: a killed agent's retry asks again from the version its sink has
then. The masked values are the same bytes a hub-side sink of the same need gets: the
same code computes them with the same key.

Arrow IPC rather than Parquet: every type the delivery carries (intervals, raw float8
bits) goes through unchanged.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataferry.agent.uploads import file_sha256
from dataferry.connectors.base import Delivery, SinkConnector
from dataferry.engine.deliver import deliver_into
from dataferry.errors import UsageError
from dataferry.model.spec import Need
from dataferry.model.types import parse_type
from dataferry.store.store import Store


class Downloads:
    """Files the hub derived for an agent job, under ``<home>/agent-downloads``."""

    def __init__(self, home: Path) -> None:
        self.root = home / "agent-downloads"

    def folder(self, agent_job_id: int, attempt: int) -> Path:
        return self.root / str(agent_job_id) / str(attempt)

    def path(self, agent_job_id: int, attempt: int, name: str) -> Path:
        if not name.startswith("step-") or not name.removeprefix("step-").removesuffix(
                ".arrows").isdigit() or not name.endswith(".arrows"):
            raise UsageError(f"no derived file {name!r} (step-NNNNN.arrows)")
        return self.folder(agent_job_id, attempt) / name

    def discard(self, agent_job_id: int) -> None:
        shutil.rmtree(self.root / str(agent_job_id), ignore_errors=True)


class CaptureSink(SinkConnector):
    """A sink that has ``previous`` (what the agent's sink said) and writes each delivery
    it is given to a file instead of a database: the steps an agent replays."""

    kind = "agent-capture"

    def __init__(self, consumer: str, previous: int | None, folder: Path) -> None:
        self.consumer, self.previous, self.folder = consumer, previous, folder
        self.steps: list[dict[str, Any]] = []

    def applied_version(self, dataset: str, table: str) -> int | None:
        return self.previous

    def deliver(self, delivery: Delivery) -> int:
        self.check(delivery)
        name = f"step-{len(self.steps):05d}.arrows"
        path = self.folder / name
        rows = 0
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        with pa.OSFile(str(path), "wb") as out, \
                pa.ipc.new_stream(out, delivery.rows.schema, options=options) as writer:
            for batch in delivery.rows:
                writer.write_batch(batch)
                rows += batch.num_rows
        self.steps.append({
            "name": name, "sha256": file_sha256(path), "rows": rows, "dataset": delivery.dataset,
            "table": delivery.table, "mode": delivery.mode,
            "columns": [[n, str(t), bool(nullable)] for n, t, nullable in delivery.columns],
            "primary_key": list(delivery.primary_key), "version": delivery.version,
            "previous": delivery.previous, "created_at": delivery.created_at.isoformat(),
            "reload": delivery.reload})
        return rows


def derive(store: Store, payload: dict[str, Any], previous: int | None,
           folder: Path) -> dict[str, Any]:
    """The steps (files written to ``folder``) that bring a sink having ``previous`` to the
    dataset's latest version for the need the agent job's ``payload`` names (the hub wrote
    it when it queued the job), masked; and what the delivery reports."""
    need = Need.model_validate(payload["need"])
    shutil.rmtree(folder, ignore_errors=True)  # an earlier request of this attempt
    folder.mkdir(parents=True)
    capture = CaptureSink(str(payload["consumer"]), previous, folder)
    done = deliver_into(capture, str(payload["consumer"]), need,
                        store.dataset(str(payload["dataset"])), str(payload["table"]),
                        home=store.home, full=bool(payload["full"]))
    return {"steps": capture.steps, "version": done.version, "previous": done.previous,
            "rows": done.rows, "warnings": list(done.warnings)}


def step_delivery(step: dict[str, Any], consumer: str,
                  rows: pa.RecordBatchReader) -> Delivery:
    """The ``Delivery`` an agent applies for one derived step (``rows``: its file's)."""
    return Delivery(
        dataset=str(step["dataset"]), consumer=consumer, table=str(step["table"]),
        mode=str(step["mode"]),
        columns=[(str(n), parse_type(str(t)), bool(nullable)) for n, t, nullable in
                 step["columns"]],
        primary_key=[str(k) for k in step["primary_key"]], version=int(step["version"]),
        previous=None if step["previous"] is None else int(step["previous"]),
        created_at=datetime.fromisoformat(str(step["created_at"])), rows=rows,
        reload=bool(step["reload"]))
