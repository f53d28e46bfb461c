"""The hub's agent routes: ``/api/v1/agents`` for admins, ``/api/v1/agent/*`` for agents.

Admins list agents (with the job each runs), make enrollment tokens and revoke agents;
each change is audited. Agents register once (token + public key + signature), then
present their credential (``Authorization: Bearer fa_...``) on every call: long-poll for
a job, stream log lines, upload files (hashed as they arrive), report the result (signed
with the agent's Ed25519 key, checked against the key it enrolled). A call about a job
the agent no longer holds (its lease expired, it was revoked) gets 409: the agent drops
the job. Agents only ever call the hub; the hub never calls them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from dataferry import __version__
from dataferry.agent.derived import Downloads
from dataferry.agent.derived import derive as derived_steps
from dataferry.agent.queue import AgentJob, AgentJobs
from dataferry.agent.registry import Agent, Agents
from dataferry.agent.uploads import Uploads
from dataferry.agent.wire import signed_text
from dataferry.engine.context import RunContext
from dataferry.errors import AuthError, UsageError, VerificationError
from dataferry.metadata.runs import RunHistory
from dataferry.server.auth.dependency import AdminPrincipal, client_ip
from dataferry.server.errors import BadRequest, Conflict, NotFound, Unauthorized

router = APIRouter()
POLL_SECONDS = 25.0
POLL_EVERY = 0.5
AgentId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Label = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


def _context(request: Request) -> RunContext:
    context: RunContext = request.app.state.context
    return context


def _agents(request: Request) -> Agents:
    return Agents(_context(request).metadata, request.app.state.auth.now)


def _queue(request: Request) -> AgentJobs:
    seconds = getattr(request.app.state, "agent_lease_seconds", None)
    context = _context(request)
    if seconds is None:
        return AgentJobs(context.metadata, request.app.state.auth.now)
    return AgentJobs(context.metadata, request.app.state.auth.now, seconds)


# --- admins ---------------------------------------------------------------------------


class AgentOut(BaseModel):
    id: int
    network: str
    hostname: str
    version: str
    enrolled_at: datetime
    last_seen: datetime | None
    revoked_at: datetime | None
    running_job: str | None

    @classmethod
    def of(cls, agent: Agent, running: AgentJob | None) -> AgentOut:
        return cls(id=agent.id, network=agent.network, hostname=agent.hostname,
                   version=agent.version, enrolled_at=agent.enrolled_at,
                   last_seen=agent.last_seen_at, revoked_at=agent.revoked_at,
                   running_job=None if running is None else running.job_id)


class NewEnrollment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    network: Label


class EnrollmentOut(BaseModel):
    network: str
    token: str
    expires_at: datetime


@router.get("/agents")
def list_agents(request: Request, principal: AdminPrincipal,
                all_agents: Annotated[bool, Query(alias="all")] = False) -> list[AgentOut]:
    """Enrolled agents: network, last contact, version, the job each runs now."""
    queue = _queue(request)
    return [AgentOut.of(a, queue.running_for(a.id))
            for a in _agents(request).list(include_revoked=all_agents)]


@router.post("/agents/enrollments", status_code=201)
def enroll(request: Request, principal: AdminPrincipal, body: NewEnrollment) -> EnrollmentOut:
    """A one-time enrollment token for an agent of ``network`` (valid 24 h, shown once)."""
    made = _agents(request).enroll(body.network, actor=principal.username)
    return EnrollmentOut(network=made.network, token=made.token, expires_at=made.expires_at)


@router.post("/agents/{agent_id}/revoke", status_code=204)
def revoke(request: Request, principal: AdminPrincipal, agent_id: AgentId) -> None:
    """Revoke an agent: refused from its next contact, its running job queued again."""
    if not _agents(request).revoke(agent_id, actor=principal.username,
                                   client_ip=client_ip(request)):
        raise NotFound(f"no live agent {agent_id} (GET /api/v1/agents)")


# --- agents ---------------------------------------------------------------------------


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=10, max_length=200)
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")
    hostname: str = Field("", max_length=300)
    version: str = Field("", max_length=100)


class Registered(BaseModel):
    agent_id: int
    network: str
    credential: str


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


async def current_agent(request: Request,
                        authorization: Annotated[str | None, Header()] = None,
                        x_ferry_agent_version: Annotated[str | None, Header()] = None) -> Agent:
    """The agent whose credential the request carries (401 otherwise, revoked included)."""
    try:
        return await asyncio.to_thread(_agents(request).authenticate,
                                       _bearer(authorization), version=x_ferry_agent_version)
    except AuthError as error:
        raise Unauthorized(str(error)) from None


CurrentAgent = Annotated[Agent, Depends(current_agent)]


@router.post("/agent/register", status_code=201)
def register(request: Request, body: Registration) -> Registered:
    """Spend an enrollment token: the agent's public key in, its credential out (once)."""
    try:
        made = _agents(request).spend(body.token, body.public_key, body.signature,
                                      hostname=body.hostname, version=body.version,
                                      client_ip=client_ip(request))
    except AuthError as error:
        raise Unauthorized(str(error)) from None
    return Registered(agent_id=made.agent.id, network=made.agent.network,
                      credential=made.secret)


class Poll(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(POLL_SECONDS, ge=0, le=POLL_SECONDS)


class JobOut(BaseModel):
    id: int
    attempt: int
    job_id: str
    kind: str
    network: str
    payload: dict[str, Any]
    lease_seconds: float


class PollAnswer(BaseModel):
    agent_id: int
    job: JobOut | None
    hub_version: str = __version__


@router.post("/agent/poll")
async def poll(request: Request, agent: CurrentAgent, body: Poll) -> PollAnswer:
    """Long-poll: a job of the agent's network as soon as one is queued, or none after
    ``timeout`` seconds (at most 25)."""
    queue = _queue(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + body.timeout
    closing: asyncio.Event | None = getattr(getattr(request.app.state, "shutdown", None),
                                            "closing", None)
    agents = _agents(request)
    while True:
        current = await asyncio.to_thread(agents.get, agent.id)
        if current is None or current.revoked_at is not None:  # revoked while it waited
            raise Unauthorized(f"agent {agent.id} is revoked: enroll a new one "
                               "(ferry agents enroll NETWORK)")
        claimed = await asyncio.to_thread(queue.claim, agent.network, agent.id)
        if claimed is not None:
            if claimed.run_id is not None:
                await asyncio.to_thread(
                    RunHistory(_context(request).metadata).log, claimed.run_id, "info",
                    f"agent {agent.id} ({agent.hostname}) started attempt {claimed.attempt}")
            return PollAnswer(agent_id=agent.id, job=JobOut(
                id=claimed.id, attempt=claimed.attempt, job_id=claimed.job_id,
                kind=claimed.kind, network=claimed.network, payload=claimed.payload,
                lease_seconds=queue.lease.total_seconds()))
        if loop.time() >= deadline or (closing is not None and closing.is_set()) \
                or await request.is_disconnected():
            return PollAnswer(agent_id=agent.id, job=None)
        await asyncio.sleep(min(POLL_EVERY, max(0.0, deadline - loop.time())))


def _held(request: Request, agent: Agent, agent_job_id: int, attempt: int) -> AgentJob:
    queue = _queue(request)
    held = queue.holds(agent_job_id, agent.id, attempt)
    if held is None:
        _drop_uploads(request, queue, agent_job_id)
        raise Conflict(f"agent job {agent_job_id} attempt {attempt} is no longer yours "
                       "(its lease ran out or the agent was revoked): drop it")
    return held


def _drop_uploads(request: Request, queue: AgentJobs, agent_job_id: int) -> None:
    """A job no one will publish (cancelled: its run on the hub ended) keeps no uploads."""
    job = queue.get(agent_job_id)
    if job is not None and job.state == "cancelled":
        Uploads(_context(request).store.home).discard(agent_job_id)
        Downloads(_context(request).store.home).discard(agent_job_id)


class LogLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: Literal["info", "warning", "error"] = "info"
    message: str = Field(max_length=2000)


class LogLines(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(ge=1)
    lines: list[LogLine] = Field(default_factory=list, max_length=100)


@router.post("/agent/jobs/{agent_job_id}/log", status_code=204)
def job_log(request: Request, agent: CurrentAgent, agent_job_id: AgentId,
            body: LogLines) -> None:
    """Log lines and progress of a running job, into its run; renews the job's lease."""
    held = _held(request, agent, agent_job_id, body.attempt)
    if held.run_id is not None:
        runs = RunHistory(_context(request).metadata)
        for line in body.lines:
            runs.log(held.run_id, line.level, f"agent {agent.id}: {line.message}")


@router.put("/agent/jobs/{agent_job_id}/files/{name}", status_code=204)
async def upload(request: Request, agent: CurrentAgent, agent_job_id: AgentId, name: str,
                 attempt: Annotated[int, Query(ge=1)],
                 x_ferry_sha256: Annotated[str, Header(pattern=r"^[0-9a-fA-F]{64}$")]) -> None:
    """One file the job produced; refused (409/400) unless the agent holds the job and the
    bytes hash to ``X-Ferry-Sha256``."""
    await asyncio.to_thread(_held, request, agent, agent_job_id, attempt)
    uploads = Uploads(_context(request).store.home)
    try:
        uploads.path(agent_job_id, attempt, name)
        await uploads.receive(agent_job_id, attempt, name, x_ferry_sha256, request.stream())
    except (UsageError, VerificationError) as error:
        raise BadRequest(str(error)) from None


class DeriveAsk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(ge=1)
    previous: int | None = Field(None, ge=0)


@router.post("/agent/jobs/{agent_job_id}/derive")
def derive(request: Request, agent: CurrentAgent, agent_job_id: AgentId,
           body: DeriveAsk) -> dict[str, Any]:
    """A masked delivery's steps from ``previous`` (the version the agent's sink has),
    computed here with the hub's mask key (``derived``): file names, hashes and what
    each ``Delivery`` says. Only for a ``deliver`` job the hub queued as derived."""
    held = _held(request, agent, agent_job_id, body.attempt)
    if held.kind != "deliver" or not held.payload.get("derived"):
        raise BadRequest(f"agent job {agent_job_id} is not a derived delivery")
    store = _context(request).store
    folder = Downloads(store.home).folder(agent_job_id, body.attempt)
    return derived_steps(store, held.payload, body.previous, folder)


@router.get("/agent/jobs/{agent_job_id}/downloads/{name}")
def download(request: Request, agent: CurrentAgent, agent_job_id: AgentId, name: str,
             attempt: Annotated[int, Query(ge=1)]) -> FileResponse:
    """One file ``derive`` wrote for the job (the agent checks it against the hash
    ``derive`` gave); 409 unless the agent holds the job."""
    _held(request, agent, agent_job_id, attempt)
    try:
        path = Downloads(_context(request).store.home).path(agent_job_id, attempt, name)
    except UsageError as error:
        raise BadRequest(str(error)) from None
    if not path.is_file():
        raise NotFound(f"agent job {agent_job_id} attempt {attempt} has no file {name}: "
                       "ask derive first")
    return FileResponse(path, media_type="application/vnd.apache.arrow.stream")


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(ge=1)
    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)
    error: str | None = Field(None, max_length=4000)
    signature: str = Field(pattern=r"^[0-9a-f]{128}$")


@router.post("/agent/jobs/{agent_job_id}/result", status_code=204)
def job_result(request: Request, agent: CurrentAgent, agent_job_id: AgentId,
               body: Report) -> None:
    """How the job ended, signed with the agent's key; the hub verifies the uploads'
    hashes and publishes (``dispatch``)."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(agent.public_key)).verify(
            bytes.fromhex(body.signature),
            signed_text(agent_job_id, body.attempt, body.ok, body.result))
    except InvalidSignature:
        raise BadRequest("the report's signature does not match the agent's key") from None
    queue = _queue(request)
    if not queue.finish(agent_job_id, agent.id, body.attempt, ok=body.ok, result=body.result,
                        error=body.error):
        _drop_uploads(request, queue, agent_job_id)
        raise Conflict(f"agent job {agent_job_id} attempt {body.attempt} is no longer yours: "
                       "its result is not taken")
