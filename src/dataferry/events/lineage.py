"""Run events as OpenLineage (openlineage-python's event model): a ``START`` at the time
the run started, then ``COMPLETE`` or ``FAIL``, with what the run read (inputs) and wrote
(outputs), named by OpenLineage's naming spec so that lineage runs end to end:

- an ingest reads its source's tables or files (``postgres://host:port`` +
  ``database.schema.table``, ``file`` + a path: ``SourceConnector.lineage_inputs``) and
  writes the store's dataset;
- a transform reads and writes store datasets;
- a delivery reads a store dataset and writes the sink's table
  (``SinkConnector.lineage_output``).

The store's datasets are named ``<team>.<dataset>`` in the namespace
``dataferry://<namespace>`` (the ``openlineage: namespace``, by default the ecosystem's
name), whatever disk or bucket holds the store: the name stays when the store moves, and
it is the name users know. Each version a run read or wrote carries a ``version`` facet.

A run id is a UUID derived from the namespace and the run's number, so the same run is
the same OpenLineage run however often it is sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dataferry import __version__
from dataferry.connectors.base import LineageName
from dataferry.connectors.registry import sink_class, source_class
from dataferry.errors import FerryError
from dataferry.metadata import Event
from dataferry.metadata.outbox import RUN_SUCCEEDED
from dataferry.model.graph import ModelIndex
from dataferry.model.spec import SourceDataset, Transformer

PRODUCER = f"https://github.com/dataferry/dataferry/tree/v{__version__}"


@dataclass(frozen=True)
class JobDatasets:
    """What a job reads and writes as OpenLineage names it (store datasets by ref)."""

    inputs: list[LineageName]
    outputs: list[LineageName]


class LineageNames:
    """The OpenLineage names of the model's jobs' inputs and outputs."""

    def __init__(self, index: ModelIndex, model_root: Path, namespace: str) -> None:
        self.index = index
        self.model_root = model_root
        self.namespace = namespace
        self.store = f"dataferry://{namespace}"
        self._known: dict[str, JobDatasets] = {}

    def stored(self, ref: str) -> LineageName:
        """A store dataset: ``dataferry://<namespace>`` + ``<team>.<dataset>``."""
        return LineageName(self.store, ref)

    def of_job(self, job: str) -> JobDatasets:
        """What ``job`` (``ingest:<ref>``, ``transform:<ref>``,
        ``deliver:<consumer>:<table>``) reads and writes by the model; nothing for a job
        the model no longer has."""
        if job not in self._known:
            try:
                self._known[job] = self._find(job)
            except FerryError:  # a connector kind that is no longer installed
                self._known[job] = JobDatasets([], [])
        return self._known[job]

    def _find(self, job: str) -> JobDatasets:
        kind, _, rest = job.partition(":")
        if kind in ("ingest", "transform"):
            entry = self.index.datasets.get(rest)
            if entry is None:
                return JobDatasets([], [self.stored(rest)])
            if isinstance(entry.spec, Transformer):
                return JobDatasets([self.stored(ref) for ref in entry.spec.inputs],
                                   [self.stored(rest)])
            if entry.source is None or not isinstance(entry.spec, SourceDataset):
                return JobDatasets([], [self.stored(rest)])
            source = source_class(entry.source.kind)
            return JobDatasets(source.lineage_inputs(entry.source, rest, entry.spec,
                                                     self.model_root), [self.stored(rest)])
        if kind == "deliver":
            consumer_ref, _, table = rest.rpartition(":")
            found = self.index.consumers.get(consumer_ref)
            if found is None:
                return JobDatasets([], [])
            consumer = found[2]
            for need in consumer.datasets:
                if (need.table or need.ref.partition(".")[2]) == table:
                    sink = sink_class(consumer.sink.kind)
                    output = sink.lineage_output(consumer.sink, table, self.model_root)
                    return JobDatasets([self.stored(need.ref)],
                                       [output] if output is not None else [])
        return JobDatasets([], [])


def openlineage_json(event: Event, names: LineageNames,
                     started_at: datetime | None = None) -> list[str]:
    """The OpenLineage events of a run event (``run.succeeded`` / ``run.failed``): a
    ``START`` at ``started_at`` (when known), then its ``COMPLETE`` or ``FAIL``."""
    try:
        from openlineage.client.event_v2 import (
            InputDataset,
            Job,
            OutputDataset,
            Run,
            RunEvent,
            RunState,
        )
        from openlineage.client.facet_v2 import dataset_version_dataset, error_message_run
        from openlineage.client.serde import Serde
    except ImportError:
        raise FerryError("openlineage: is set in ferry.yaml but openlineage-python is not "
                         "installed: pip install 'dataferry[lineage]'") from None

    data = event.data
    job = str(data["job"])
    known = names.of_job(job)
    versions = {str(item["ref"]): str(item["version"])
                for item in [*data.get("read", []), *data.get("written", [])]}

    def facets(name: LineageName) -> dict[str, Any]:
        if name.namespace != names.store or name.name not in versions:
            return {}
        return {"version": dataset_version_dataset.DatasetVersionDatasetFacet(
            versions[name.name], producer=PRODUCER)}

    def merged(model: list[LineageName], ran: list[dict[str, Any]]) -> list[LineageName]:
        """The model's names, and the store versions the run used that it does not name."""
        extra = [names.stored(str(item["ref"])) for item in ran]
        return model + [name for name in extra if name not in model]

    inputs = merged(known.inputs, data.get("read", []))
    outputs = merged(known.outputs, data.get("written", []))
    run_facets: dict[str, Any] = {}
    if event.type != RUN_SUCCEEDED and data.get("error"):
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            str(data["error"]), "python", producer=PRODUCER)
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"dataferry:{names.namespace}:run:{data['run']}"))

    def lineage(state: RunState, at: datetime, run_facets: dict[str, Any]) -> str:
        return str(Serde.to_json(RunEvent(
            eventType=state,
            eventTime=at.isoformat(),
            producer=PRODUCER,
            run=Run(runId=run_id, facets=run_facets),
            job=Job(namespace=names.namespace, name=job),
            inputs=[InputDataset(n.namespace, n.name, facets=facets(n)) for n in inputs],
            outputs=[OutputDataset(n.namespace, n.name, facets=facets(n)) for n in outputs],
        )))

    end = lineage(RunState.COMPLETE if event.type == RUN_SUCCEEDED else RunState.FAIL,
                  event.time, run_facets)
    return [end] if started_at is None else [lineage(RunState.START, started_at, {}), end]
