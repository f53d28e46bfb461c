"""Run events as OpenLineage (openlineage-python's event model): ``COMPLETE`` or ``FAIL``
with the dataset versions the run read (inputs) and wrote (outputs).

A run id is a UUID derived from the ecosystem and the run's number, so the same run is
the same OpenLineage run however often it is sent.
"""

from __future__ import annotations

import uuid
from typing import Any

from dataferry import __version__
from dataferry.errors import FerryError
from dataferry.metadata import Event
from dataferry.metadata.outbox import RUN_SUCCEEDED

PRODUCER = f"https://github.com/dataferry/dataferry/tree/v{__version__}"


def openlineage_json(event: Event, namespace: str) -> str:
    """The OpenLineage JSON of a run event (``run.succeeded`` / ``run.failed``)."""
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

    def version(item: dict[str, Any]) -> dict[str, Any]:
        return {"version": dataset_version_dataset.DatasetVersionDatasetFacet(
            str(item["version"]), producer=PRODUCER)}

    run_facets: dict[str, Any] = {}
    if event.type != RUN_SUCCEEDED and data.get("error"):
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            str(data["error"]), "python", producer=PRODUCER)
    lineage = RunEvent(
        eventType=RunState.COMPLETE if event.type == RUN_SUCCEEDED else RunState.FAIL,
        eventTime=event.time.isoformat(),
        producer=PRODUCER,
        run=Run(runId=str(uuid.uuid5(uuid.NAMESPACE_URL,
                                     f"dataferry:{namespace}:run:{data['run']}")),
                facets=run_facets),
        job=Job(namespace=namespace, name=str(data["job"])),
        inputs=[InputDataset(namespace, str(item["ref"]), facets=version(item))
                for item in data.get("read", [])],
        outputs=[OutputDataset(namespace, str(item["ref"]), facets=version(item))
                 for item in data.get("written", [])],
    )
    return str(Serde.to_json(lineage))
