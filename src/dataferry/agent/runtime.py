"""``ferry agent``: enroll once, then poll the hub for jobs of this network and run them.

The first start spends the enrollment token (``--token``) for a credential saved in
``--home`` with the agent's key; later starts need neither. The agent only dials out: it
long-polls the hub (``POST /api/v1/agent/poll``, about 25 s a call), runs each job it is
given (``work``) and polls again. The hub unreachable: it retries with backoff (1 s
doubling to 30 s). Refused by the hub (revoked, unknown credential): it stops, exit 1.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from dataferry.agent.client import HubClient
from dataferry.agent.identity import Enrolled, Identity
from dataferry.agent.work import run_job
from dataferry.errors import TransientError, UsageError

log = logging.getLogger("dataferry.agent")
POLL_SECONDS = 25.0
MAX_BACKOFF = 30.0


def enroll(client: HubClient, identity: Identity, token: str | None) -> Enrolled:
    """The agent's credential: saved in its home, else got now by spending ``token``."""
    saved = identity.enrolled()
    if saved is not None:
        client.enrolled = saved
        return saved
    if not token:
        raise UsageError(f"{identity.home} holds no agent credential: start the agent once "
                         "with --token (from ferry agents enroll NETWORK on the hub)")
    enrolled = client.register(token, socket.gethostname())
    identity.save(enrolled)
    return enrolled


def run_agent(hub: str, token: str | None, home: Path, *, model_root: Path | None = None,
              stop: threading.Event | None = None, poll_seconds: float = POLL_SECONDS,
              say: Callable[[str], None] = log.info, verify: bool | str = True) -> None:
    """Enroll if needed, then run jobs until ``stop`` is set (or the hub refuses us)."""
    stop = stop or threading.Event()
    identity = Identity(home)
    client = HubClient(hub, identity, verify=verify)
    try:
        enrolled = enroll(client, identity, token)
        say(f"agent {enrolled.agent_id} of network {enrolled.network}: polling {client.hub}")
        backoff = 1.0
        while not stop.is_set():
            try:
                job = client.poll(poll_seconds)
                backoff = 1.0
            except TransientError as error:
                say(f"{error}; retrying in {backoff:g} s")
                stop.wait(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            if job is None:
                continue
            say(f"running {job['job_id']} (attempt {job['attempt']})")
            try:
                ended = run_job(client, job, model_root or Path.cwd(), home)
            except TransientError as error:  # the hub went away mid-job: its lease will
                say(f"{job['job_id']}: {error}; the hub will give it out again")
                continue
            say(f"{job['job_id']}: {ended}")
    finally:
        client.close()
