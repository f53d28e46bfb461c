"""What hub and agent send each other about an ingest, as JSON (both sides use this).

The hub sends the source's model entry as written, its ``${env:...}``/``${file:...}``
references unresolved: the agent resolves them where it runs, and no secret value
crosses to the hub. The agent sends back the live columns (as an Arrow schema), the
state its source reported and, for each file it uploaded, its name, rows and SHA-256.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import pyarrow as pa
from pydantic import TypeAdapter

from dataferry.connectors.base import ReadRequest, SourceColumn
from dataferry.model.spec import AnySource, Source, SourceDataset

_SOURCE: TypeAdapter[Any] = TypeAdapter(Source)


def ingest_payload(ref: str, source_name: str, source: AnySource,
                   request: ReadRequest) -> dict[str, Any]:
    """The ingest job for an agent: which dataset, its source entry, what to read."""
    since = request.since
    return {
        "dataset": ref,
        "source_name": source_name,
        "source": source.model_dump(mode="json", exclude_none=True, by_alias=True),
        "spec": request.spec.model_dump(mode="json", exclude_none=True,
                                        by_alias=True),
        "columns": request.columns,
        "state": request.state,
        "since": since.isoformat() if isinstance(since, datetime) else since,
        "since_is_datetime": isinstance(since, datetime),
        "lag_seconds": request.lag_seconds,
    }


def source_of(payload: dict[str, Any]) -> AnySource:
    source: AnySource = _SOURCE.validate_python(payload["source"])
    return source


def request_of(payload: dict[str, Any]) -> ReadRequest:
    since = payload.get("since")
    if since is not None and payload.get("since_is_datetime"):
        since = datetime.fromisoformat(since)
    return ReadRequest(dataset=payload["dataset"],
                       spec=SourceDataset.model_validate(payload["spec"]),
                       columns=list(payload["columns"]), state=payload.get("state"),
                       since=since, lag_seconds=payload.get("lag_seconds"))


def columns_to_json(columns: list[SourceColumn]) -> str:
    """Live source columns as a base64 Arrow schema (types survive exactly)."""
    schema = pa.schema([pa.field(c.name, c.arrow_type, c.nullable,
                                 metadata={"native_type": c.native_type}) for c in columns])
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def columns_from_json(text: str) -> list[SourceColumn]:
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
    return [SourceColumn(f.name, (f.metadata or {}).get(b"native_type", b"").decode(),
                         f.type, f.nullable) for f in schema]


def signed_text(agent_job_id: int, attempt: int, ok: bool, result: dict[str, Any]) -> bytes:
    """What an agent signs to report a job (both sides build it the same way)."""
    return json.dumps({"job": agent_job_id, "attempt": attempt, "ok": ok, "result": result},
                      sort_keys=True, separators=(",", ":")).encode()
