"""Running a job of a private network through an agent, from the hub's runner.

``ferry run``, ``ferry up`` and the scheduler in ``ferry serve`` call ``run_on_agent`` for
every job whose platform has a ``network``: the job is queued for that network's agents
and the run says "waiting for an agent of NETWORK" until one claims it. Once the agent
reports, an ingest's uploaded files are hashed again and published here, on the hub,
through the same ``engine.ingest`` as any ingest (drift, cursor, keyed difference,
signature): the signing keys never leave the hub. A delivery to a sink in the network is
applied by the agent from its own verified clone of the dataset (``work``), or, for a need
with ``mask:``, from the masked rows the hub derives for it (``derived``). No agent claims
it within ``wait`` seconds: the job is withdrawn and fails with that reason. An agent that vanishes or is
revoked mid-job loses its lease; the job goes back to the queue (``queue``) and the
waiting goes on.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataferry.agent.derived import Downloads
from dataferry.agent.queue import AgentJob, AgentJobs
from dataferry.agent.registry import Agents
from dataferry.agent.uploads import Uploads
from dataferry.agent.wire import columns_from_json, ingest_payload
from dataferry.broker.graph import Job
from dataferry.connectors.base import ReadRequest, ReadResult, SourceColumn, SourceConnector
from dataferry.engine.context import RunContext
from dataferry.engine.deliver import DeliverResult
from dataferry.engine.ingest import IngestResult
from dataferry.engine.transform import TransformResult
from dataferry.errors import FerryError, SinkError, SourceError, TransientError
from dataferry.metadata.runs import VersionRef
from dataferry.model.agentcheck import agent_refusal
from dataferry.model.spec import SourceDataset

WAIT_SECONDS = 300.0
"""How long a job waits for an agent of its network to claim it (``ferry run --agent-wait``)."""
POLL_SECONDS = 0.25


class AgentWaitError(FerryError):
    """No agent of the network claimed the job in time (or none is enrolled)."""


def network_of(context: RunContext, job: Job) -> str | None:
    """The private network ``job`` runs in, or None when it runs here."""
    platform = context.ecosystem.platforms.get(job.platform)
    return job.network or (platform.network if platform is not None else None)


@dataclass
class AgentOutcome:
    """What the agent reported about a job that ended well."""

    job: AgentJob
    result: dict[str, Any]


def run_on_agent(context: RunContext, job: Job, *, run_id: int | None, full: bool,
                 on_rows: Callable[[int], None] | None, wait: float = WAIT_SECONDS,
                 log: Callable[[str], None] | None = None
                 ) -> IngestResult | DeliverResult | TransformResult:
    """Have an agent of the job's network run ``job``; returns what ``engine.ingest``,
    ``engine.deliver`` or ``engine.transform`` return. Raises ``AgentWaitError`` when no
    agent claims it in time."""
    network = network_of(context, job)
    assert network is not None
    if job.kind == "deliver":
        return _deliver(context, job, network, run_id=run_id, full=full, wait=wait, log=log)
    if job.kind == "transform":
        return _transform(context, job, network, run_id=run_id, full=full, wait=wait, log=log,
                          on_rows=on_rows)
    from dataferry.engine.ingest import ingest, read_request

    entry = context.index.datasets[job.dataset]
    assert entry.source is not None and entry.source_name is not None
    payload = ingest_payload(job.dataset, f"{entry.team}.{entry.source_name}", entry.source,
                             read_request(context, job.dataset, full=full))
    outcome = wait_for_agent(context, job.id, network, "ingest", payload, run_id=run_id,
                             wait=wait, log=log)
    uploads = Uploads(context.store.home)
    try:
        files = outcome.result.get("files", [])
        paths = uploads.verified(outcome.job.id, outcome.job.attempt, files)
        uploaded = UploadedSource(entry.source_name, entry.source, context.root, outcome.result,
                                  paths)
        return ingest(context, job.dataset, full=full, on_rows=on_rows, connector=uploaded)
    finally:
        uploads.discard(outcome.job.id)


def _deliver(context: RunContext, job: Job, network: str, *, run_id: int | None, full: bool,
             wait: float, log: Callable[[str], None] | None) -> DeliverResult:
    """A delivery to a sink in ``network``: the agent clones the dataset from the hub
    (replication, every byte verified against the dataset id sent here) and applies it
    with the sink's own ``_ferry_loads`` ledger, exactly once. A need with ``mask:`` is
    derived here instead (``derived``): the agent fetches its masked rows, never the
    dataset, and the mask key never leaves the hub."""
    assert job.consumer is not None and job.need is not None
    _, _, consumer = context.index.consumers[job.consumer]
    need = consumer.datasets[job.need]
    head = context.store.dataset(need.ref).head()
    if head is None:
        raise SinkError(f"{job.id}: {need.ref} has no published version yet", public=True)
    if run_id is not None:  # gc keeps it while the agent clones it
        context.runs.record_reading(run_id, [VersionRef(need.ref, head.number)])
    payload = {"consumer": job.consumer,
               "need": need.model_dump(mode="json", exclude_none=True, by_alias=True),
               "sink": consumer.sink.model_dump(mode="json", exclude_none=True, by_alias=True),
               "dataset": need.ref, "dataset_id": head.manifest.dataset_id,
               "version": head.number, "full": full,
               "table": need.table or context.index.datasets[need.ref].name,
               # masked: the hub derives the rows (its mask key), the agent clones nothing
               "derived": bool(need.mask)}
    outcome = wait_for_agent(context, job.id, network, "deliver", payload, run_id=run_id,
                             wait=wait, log=log)
    done = outcome.result
    return DeliverResult(job.consumer, need.ref, str(done["table"]), int(done["version"]),
                         None if done.get("previous") is None else int(done["previous"]),
                         int(done["rows"]), tuple(str(w) for w in done.get("warnings", ())))


def _transform(context: RunContext, job: Job, network: str, *, run_id: int | None, full: bool,
               wait: float, log: Callable[[str], None] | None,
               on_rows: Callable[[int], None] | None) -> TransformResult:
    """A SQL transform on a platform in ``network``: the hub pins the input versions and
    decides whether it is due, as ``engine.transform`` does; the agent clones each input at
    its pinned version (replication, every byte verified), runs the SQL on DuckDB under the
    same lock-down and uploads the output; the hub hashes the files again and publishes
    them as the keyed difference, signed here, with the lineage and definition."""
    from dataferry.engine.transform import (
        TransformError,
        _input_mask,
        due_transform,
        publish_output,
        transformer_text,
    )

    ref = job.dataset
    refused = agent_refusal(context.index, ref, network)
    if refused is not None:
        raise TransformError(f"{job.id}: {refused}", public=True)
    pin = None if run_id is None else (
        lambda read: context.runs.record_reading(run_id, read))  # gc keeps them meanwhile
    due = due_transform(context, ref, pin, full)
    if due.reason is None:
        return TransformResult(ref, None)
    inputs: list[dict[str, Any]] = []
    lineage: list[dict[str, Any]] = []
    for input_ref, number in due.inputs:
        _input_mask(context, ref, input_ref)  # refuses an input whose owners do not approve
        version = context.store.dataset(input_ref).version(number)
        lineage.append({"ref": input_ref, "version": number, "manifest_hash": version.hash})
        inputs.append({"ref": input_ref, "version": number,
                       "dataset_id": version.manifest.dataset_id})
    payload = {"dataset": ref, "sql": transformer_text(context, ref), "inputs": inputs,
               "refs": list(due.spec.inputs)}
    outcome = wait_for_agent(context, job.id, network, "transform", payload, run_id=run_id,
                             wait=wait, log=log)
    uploads = Uploads(context.store.home)
    try:
        paths = uploads.verified(outcome.job.id, outcome.job.attempt,
                                 outcome.result.get("files", []))
        data = uploaded_reader(str(outcome.result["schema"]), paths, on_rows=on_rows)
        published = publish_output(context, ref, data, lineage, due.definition)
    finally:
        uploads.discard(outcome.job.id)
    return TransformResult(ref, published, due.reason)


def uploaded_reader(schema_text: str, paths: list[Any], *, batch_rows: int = 65_536,
                    on_rows: Callable[[int], None] | None = None) -> pa.RecordBatchReader:
    """The rows of files an agent uploaded (verified), batch by batch, in the Arrow schema
    it reported (base64 IPC)."""
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(schema_text)))

    def batches() -> Iterator[pa.RecordBatch]:
        for path in paths:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
                if on_rows is not None:
                    on_rows(batch.num_rows)
                yield batch

    return pa.RecordBatchReader.from_batches(schema, batches())


def wait_for_agent(context: RunContext, job_id: str, network: str, kind: str,
                   payload: dict[str, Any], *, run_id: int | None, wait: float,
                   log: Callable[[str], None] | None = None,
                   sleep: Callable[[float], None] = time.sleep) -> AgentOutcome:
    """Queue a job for ``network``'s agents and wait until one reports it done.

    ``wait`` bounds the time the job spends queued (unclaimed), each time it is; a job an
    agent runs is waited for as long as the agent keeps its lease."""
    say = log or (lambda message: None)
    agents, queue = Agents(context.metadata), AgentJobs(context.metadata)
    if network not in agents.networks():
        raise AgentWaitError(f"{job_id}: waiting for an agent of {network}: none is enrolled; "
                             f"enroll one (ferry agents enroll {network}) and run ferry agent "
                             "inside the network", public=True)
    queued = queue.submit(job_id, network, kind, payload, run_id)  # type: ignore[arg-type]
    uploads = Uploads(context.store.home)
    for earlier in queue.ended_before(job_id, queued.id):  # e.g. done for a run killed since
        uploads.discard(earlier)
    say(f"waiting for an agent of {network}")
    state, attempt, since = "queued", 0, time.monotonic()
    try:
        while True:
            current = queue.get(queued.id)
            assert current is not None
            if current.state == "running" and current.lease_expires_at is not None \
                    and current.lease_expires_at <= queue.now():
                queue.requeue_expired(network)
                continue
            if (current.state, current.attempt) != (state, attempt):
                if current.state == "running" or (
                        current.state in ("done", "failed") and state != "running"):
                    # a quick job may end between two looks: say who took it all the same
                    say(f"agent {current.agent_id} of {network} took it (attempt "
                        f"{current.attempt})")
                elif current.state == "queued":
                    say(f"the agent of attempt {current.attempt} left it (vanished or revoked);"
                        f" waiting for an agent of {network}")
                    since = time.monotonic()
                state, attempt = current.state, current.attempt
            if current.state == "done":
                if kind != "deliver":  # the hub publishes what it uploaded: only if ours
                    _still_ours(context, job_id, run_id)
                return AgentOutcome(current, current.result or {})
            if current.state == "failed":
                raise _agent_failure(job_id, network, current)
            if current.state == "cancelled":
                raise AgentWaitError(f"{job_id}: withdrawn from the agents of {network}",
                                     public=True)
            if current.state == "queued" and time.monotonic() - since > wait:
                queue.cancel(queued.id)
                raise AgentWaitError(f"{job_id}: waiting for an agent of {network}: none took "
                                     f"the job within {wait:g} s (is ferry agent running in "
                                     f"{network}? ferry agents list)", public=True)
            sleep(POLL_SECONDS)
    except BaseException:
        queue.cancel(queued.id)  # Ctrl-C or a failure here: no agent should start it now
        raise
    finally:
        Downloads(context.store.home).discard(queued.id)  # what the hub derived for it


def _still_ours(context: RunContext, job_id: str, run_id: int | None) -> None:
    """Refuse to publish for a run a scheduler declared abandoned meanwhile (this process
    stalled past its lease): that scheduler retries the job, which would publish it too."""
    from dataferry.broker.runner import LEASE_SECONDS

    if run_id is not None and not context.runs.heartbeat(run_id, LEASE_SECONDS):
        raise AgentWaitError(f"{job_id}: this run was declared abandoned while its agent "
                             "worked (it stalled past its lease); its retry runs the job, "
                             "so nothing is published here", public=True)


def _agent_failure(job_id: str, network: str, job: AgentJob) -> FerryError:
    """The error an agent reported, as the run records it: its public text (model and
    metadata only) for everyone, the full one (may hold row values) for readers."""
    reported = job.result or {}
    public = f"{job_id}: the agent of {network} failed: {reported.get('public') or 'see the log'}"
    kind = TransientError if reported.get("transient") else SourceError
    return kind(f"{job_id}: the agent of {network} failed: {job.error}", public=public)


class UploadedSource(SourceConnector):
    """The files an agent uploaded for one ingest, read as the source's own rows would be:
    the columns the agent saw live, the state it recorded, its warnings."""

    kind = "agent"

    def __init__(self, name: str, spec: Any, model_root: Any, result: dict[str, Any],
                 paths: list[Any]) -> None:
        super().__init__(name, spec, model_root)
        self.result, self.paths = result, paths

    def columns(self, dataset: str, spec: SourceDataset) -> list[SourceColumn]:
        return columns_from_json(str(self.result["columns"]))

    def read(self, request: ReadRequest) -> ReadResult:
        state = self.result.get("state")
        return ReadResult(uploaded_reader(str(self.result["schema"]), self.paths,
                                          batch_rows=request.batch_rows),
                          state=lambda: state, warnings=list(self.result.get("warnings", [])),
                          unique_key=bool(self.result.get("unique_key")))
