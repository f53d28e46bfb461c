"""Enrollment tokens and agent credentials: one use, 24 h, key proven, revocation final."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataferry.agent.identity import Identity
from dataferry.agent.queue import AgentJobs
from dataferry.agent.registry import Agents
from dataferry.errors import AuthError
from dataferry.metadata import AuditLog, Metadata
from tests.conftest import FakeClock


def _spend(agents: Agents, identity: Identity, token: str) -> object:
    return agents.spend(token, identity.public_key_hex(), identity.sign(token.encode()),
                        hostname="gw1", version="1.0")


def test_a_token_is_spent_once_for_a_credential_that_authenticates(
        db: Metadata, clock: FakeClock, tmp_path: Path) -> None:
    agents = Agents(db, clock)
    made = agents.enroll("hq-lan", actor="cli:ops")
    assert "fe_" not in repr(made) or "***" in repr(made)
    identity = Identity(tmp_path / "agent")
    credential = agents.spend(made.token, identity.public_key_hex(),
                              identity.sign(made.token.encode()), hostname="gw1", version="1.0")
    assert credential.secret not in repr(credential)
    agent = agents.authenticate(credential.secret)
    assert (agent.network, agent.hostname, agent.public_key) == (
        "hq-lan", "gw1", identity.public_key_hex())
    with pytest.raises(AuthError, match="unknown, spent or expired"):
        _spend(agents, Identity(tmp_path / "other"), made.token)  # spent: refused
    with pytest.raises(AuthError, match="unknown agent credential"):
        agents.authenticate("fa_not-a-credential")
    actions = [e.action for e in AuditLog(db, clock).entries()]
    assert {"agent.enroll", "agent.register"} <= set(actions)
    if db.dialect == "sqlite":  # only hashes are kept
        stored = (tmp_path / "ferry.db").read_bytes()
        assert made.token.encode() not in stored and credential.secret.encode() not in stored


def test_a_token_expires_after_24_hours(db: Metadata, clock: FakeClock, tmp_path: Path) -> None:
    agents = Agents(db, clock)
    made = agents.enroll("hq-lan", actor="cli:ops")
    clock.advance(24 * 3600 + 1)
    with pytest.raises(AuthError, match="expired"):
        _spend(agents, Identity(tmp_path / "a"), made.token)


def test_the_key_must_sign_the_token(db: Metadata, clock: FakeClock, tmp_path: Path) -> None:
    agents = Agents(db, clock)
    made = agents.enroll("hq-lan", actor="cli:ops")
    mine, theirs = Identity(tmp_path / "a"), Identity(tmp_path / "b")
    with pytest.raises(AuthError, match="signature"):
        agents.spend(made.token, mine.public_key_hex(), theirs.sign(made.token.encode()),
                     hostname="x", version="1")
    _spend(agents, mine, made.token)  # a refused signature did not spend the token


def test_a_revoked_agent_is_refused_and_its_job_queued_again(
        db: Metadata, clock: FakeClock, tmp_path: Path) -> None:
    agents, queue = Agents(db, clock), AgentJobs(db, clock)
    credential = agents.spend(*_token_for(agents, tmp_path / "a"), hostname="gw", version="1")
    job = queue.submit("ingest:crm.customers", "hq-lan", "ingest", {})
    claimed = queue.claim("hq-lan", credential.agent.id)
    assert claimed is not None and claimed.attempt == 1
    assert agents.revoke(credential.agent.id, actor="cli:ops")
    with pytest.raises(AuthError, match="revoked"):
        agents.authenticate(credential.secret)
    again = queue.get(job.id)
    assert again is not None and (again.state, again.agent_id) == ("queued", None)
    assert not queue.finish(job.id, credential.agent.id, 1, ok=True, result={})
    assert not agents.revoke(credential.agent.id, actor="cli:ops")  # already revoked


def test_identity_is_kept_in_its_home_privately(tmp_path: Path) -> None:
    home = tmp_path / "agent"
    first = Identity(home).public_key_hex()
    assert Identity(home).public_key_hex() == first  # a restart keeps the key
    assert (home / "identity.key").stat().st_mode & 0o777 == 0o600


def _token_for(agents: Agents, home: Path) -> tuple[str, str, str]:
    token = agents.enroll("hq-lan", actor="cli:ops").token
    identity = Identity(home)
    return token, identity.public_key_hex(), identity.sign(token.encode())
