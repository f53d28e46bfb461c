"""Enrollment tokens and enrolled agents, as the hub keeps them (hashes only).

``ferry agents enroll NETWORK`` makes a one-time token valid 24 h. An agent spends it once,
sending its Ed25519 public key and a signature of the token made with that key (so the
key it registers is one it holds); it gets back an agent credential, a bearer secret kept
here as SHA-256 only. Every later request carries the credential; ``authenticate``
refuses a revoked agent at its next contact. Every change is audited.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select, update

from dataferry.errors import AuthError
from dataferry.metadata import AuditLog, Metadata
from dataferry.metadata.clock import Clock, utcnow
from dataferry.metadata.schema import AgentEnrollmentRow, AgentJobRow, AgentRow
from dataferry.server.auth.tokens import token_hash

ENROLLMENT_TTL = timedelta(hours=24)
TOUCH_EVERY = timedelta(seconds=10)
ENROLLMENT_PREFIX = "fe_"
CREDENTIAL_PREFIX = "fa_"


@dataclass(frozen=True)
class Agent:
    """An enrolled agent (its credential's hash stays in the database)."""

    id: int
    network: str
    public_key: str
    hostname: str
    version: str
    enrolled_at: datetime
    last_seen_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class Enrollment:
    """A one-time token as made: ``token`` is shown once and never again."""

    token: str
    network: str
    expires_at: datetime

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return f"Enrollment(network={self.network!r}, token='fe_***')"


@dataclass(frozen=True)
class Credential:
    """What spending an enrollment token gives the agent: its id and bearer secret."""

    agent: Agent
    secret: str

    def __repr__(self) -> str:
        return f"Credential(agent={self.agent.id}, secret='fa_***')"


class Agents:
    """Enrollment tokens and agents in the metadata DB; ``now`` is the clock."""

    def __init__(self, db: Metadata, now: Clock = utcnow) -> None:
        self.db = db
        self.now = now
        self.audit = AuditLog(db, now)

    def enroll(self, network: str, *, actor: str) -> Enrollment:
        """A new one-time enrollment token for ``network``, valid ``ENROLLMENT_TTL``."""
        token = ENROLLMENT_PREFIX + secrets.token_urlsafe(32)
        now = self.now()
        row = AgentEnrollmentRow(network=network, token_hash=token_hash(token),
                                 created_by=actor, created_at=now,
                                 expires_at=now + ENROLLMENT_TTL)
        with self.db.sessions.begin() as session:
            session.add(row)
            session.flush()
            enrollment_id = row.id
        self.audit.record(actor, "agent.enroll", f"network:{network}", "success",
                          detail={"enrollment": enrollment_id,
                                  "expires_at": row.expires_at.isoformat()})
        return Enrollment(token, network, row.expires_at)

    def spend(self, token: str, public_key: str, signature: str, *, hostname: str,
              version: str, client_ip: str | None = None) -> Credential:
        """Exchange an unspent, unexpired token for an agent credential.

        ``signature`` is the token signed with the Ed25519 key whose raw public bytes
        ``public_key`` holds (hex). Raises ``AuthError`` (one message for every refusal,
        so a caller learns nothing about which tokens exist).
        """
        refused = AuthError("the enrollment token is unknown, spent or expired: ask an "
                            "admin for a new one (ferry agents enroll NETWORK)")
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
                bytes.fromhex(signature), token.encode())
        except (ValueError, InvalidSignature):
            self.audit.record("agent", "agent.register", None, "failure", client_ip=client_ip,
                              detail={"reason": "bad key or signature"})
            raise AuthError("the enrollment request's signature does not match its "
                            "public key") from None
        now = self.now()
        secret = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
        with self.db.sessions.begin() as session:
            spent = session.connection().execute(
                update(AgentEnrollmentRow).where(
                    AgentEnrollmentRow.token_hash == token_hash(token),
                    AgentEnrollmentRow.spent_at.is_(None),
                    AgentEnrollmentRow.expires_at > now)
                .values(spent_at=now).returning(AgentEnrollmentRow.id,
                                                AgentEnrollmentRow.network)).first()
            taken = session.execute(select(AgentRow.id).where(
                AgentRow.public_key == public_key)).first()
            if spent is None or taken is not None:
                session.rollback()
                self.audit.record("agent", "agent.register", None, "failure",
                                  client_ip=client_ip,
                                  detail={"reason": "key already enrolled" if taken
                                          else "token unknown, spent or expired"})
                raise refused
            row = AgentRow(network=spent.network, public_key=public_key,
                           credential_hash=token_hash(secret), hostname=hostname[:300],
                           version=version[:100], enrolled_at=now, last_seen_at=now)
            session.add(row)
            session.flush()
            session.connection().execute(update(AgentEnrollmentRow).where(AgentEnrollmentRow.id == spent.id)
                            .values(agent_id=row.id))
            agent = _agent(row)
        self.audit.record(f"agent:{agent.id}", "agent.register", f"agent:{agent.id}",
                          "success", client_ip=client_ip,
                          detail={"network": agent.network, "hostname": agent.hostname})
        return Credential(agent, secret)

    def authenticate(self, secret: str | None, *, version: str | None = None) -> Agent:
        """The live agent holding ``secret``, its last contact stamped; ``AuthError`` if
        the credential is unknown or the agent revoked."""
        if not secret:
            raise AuthError("an agent credential is needed (Authorization: Bearer fa_...)")
        with self.db.reads.begin() as session:
            row = session.execute(select(AgentRow).where(
                AgentRow.credential_hash == token_hash(secret))).scalar_one_or_none()
            agent = None if row is None else _agent(row)
        if agent is None:
            raise AuthError("unknown agent credential: enroll the agent again")
        if agent.revoked_at is not None:
            raise AuthError(f"agent {agent.id} is revoked: enroll a new one "
                            "(ferry agents enroll NETWORK)")
        now = self.now()
        changes: dict[str, object] = {}
        if agent.last_seen_at is None or now - agent.last_seen_at >= TOUCH_EVERY:
            changes["last_seen_at"] = now
        if version and version != agent.version:
            changes["version"] = version[:100]
        if changes:
            with self.db.sessions.begin() as session:
                session.connection().execute(update(AgentRow).where(AgentRow.id == agent.id).values(**changes))
        return agent

    def get(self, agent_id: int) -> Agent | None:
        with self.db.reads.begin() as session:
            row = session.get(AgentRow, agent_id)
            return None if row is None else _agent(row)

    def list(self, *, include_revoked: bool = False) -> list[Agent]:
        """Agents, newest first; by default only those not revoked."""
        query = select(AgentRow).order_by(AgentRow.id.desc())
        if not include_revoked:
            query = query.where(AgentRow.revoked_at.is_(None))
        with self.db.reads.begin() as session:
            return [_agent(row) for row in session.execute(query).scalars()]

    def networks(self) -> set[str]:
        """The networks with an agent not revoked, or an enrollment token not yet spent
        nor expired (its agent is on its way): their jobs wait for an agent."""
        with self.db.reads.begin() as session:
            live = session.execute(select(AgentRow.network).where(
                AgentRow.revoked_at.is_(None)).distinct()).scalars().all()
            pending = session.execute(select(AgentEnrollmentRow.network).where(
                AgentEnrollmentRow.spent_at.is_(None),
                AgentEnrollmentRow.expires_at > self.now()).distinct()).scalars().all()
        return {*live, *pending}

    def revoke(self, agent_id: int, *, actor: str, client_ip: str | None = None) -> bool:
        """Revoke an agent now: refused at its next contact; its running job goes back to
        the queue for another agent of the network. False if no such live agent."""
        now = self.now()
        with self.db.sessions.begin() as session:
            done = session.connection().execute(update(AgentRow).where(
                AgentRow.id == agent_id, AgentRow.revoked_at.is_(None))
                .values(revoked_at=now)).rowcount
            if done:
                session.connection().execute(update(AgentJobRow).where(
                    AgentJobRow.agent_id == agent_id, AgentJobRow.state == "running")
                    .values(state="queued", agent_id=None, lease_expires_at=None))
        self.audit.record(actor, "agent.revoke", f"agent:{agent_id}",
                          "success" if done else "failure", client_ip=client_ip)
        return bool(done)


def _agent(row: AgentRow) -> Agent:
    return Agent(row.id, row.network, row.public_key, row.hostname, row.version,
                 row.enrolled_at, row.last_seen_at, row.revoked_at)
