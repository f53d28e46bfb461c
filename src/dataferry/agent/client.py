"""The agent's calls to the hub: outbound HTTPS only (the agent never listens).

Every call but ``register`` carries the credential. A 401 means the agent was revoked or
its credential is unknown (``AuthError``: the agent stops); 409 that the job it asks about
is no longer its own (``LostJob``: it drops the job); a connection failure or a 5xx is
transient (``TransientError``: the agent retries with backoff).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx

from dataferry import __version__
from dataferry.agent.identity import Enrolled, Identity
from dataferry.agent.wire import signed_text
from dataferry.errors import (
    AuthError,
    FerryError,
    TransientError,
    UsageError,
    VerificationError,
)

API = "/api/v1"
CHUNK = 1 << 20
DERIVE_SECONDS = 3600.0
"""How long the agent waits for the hub to derive a masked delivery's change set."""


class LostJob(FerryError):
    """The hub gave the job to another attempt (lease expired, agent revoked)."""


class HubClient:
    """An HTTP client for one hub; ``enrolled`` once the agent has its credential."""

    def __init__(self, hub: str, identity: Identity, *, verify: bool | str = True) -> None:
        self.hub = hub.rstrip("/")
        self.identity = identity
        self.http = httpx.Client(base_url=self.hub + API, verify=verify,
                                 timeout=httpx.Timeout(60.0, connect=10.0),
                                 headers={"User-Agent": f"ferry-agent/{__version__}",
                                          "X-Ferry-Agent-Version": __version__})
        self.enrolled: Enrolled | None = None

    def close(self) -> None:
        self.http.close()

    def register(self, token: str, hostname: str) -> Enrolled:
        """Spend ``token``: send the public key (and the token signed with it)."""
        answer = self._call("POST", "/agent/register", json={
            "token": token, "public_key": self.identity.public_key_hex(),
            "signature": self.identity.sign(token.encode()), "hostname": hostname,
            "version": __version__}, authorized=False)
        body = answer.json()
        self.enrolled = Enrolled(self.hub, int(body["agent_id"]), str(body["network"]),
                                 str(body["credential"]))
        return self.enrolled

    def poll(self, timeout: float) -> dict[str, Any] | None:
        answer = self._call("POST", "/agent/poll", json={"timeout": timeout},
                            read_timeout=timeout + 30)
        job: dict[str, Any] | None = answer.json()["job"]
        return job

    def log(self, job: dict[str, Any], message: str | None, level: str = "info") -> None:
        """A log line into the job's run (None: none, only renew the job's lease)."""
        lines = [] if message is None else [{"level": level, "message": message[:2000]}]
        self._call("POST", f"/agent/jobs/{job['id']}/log",
                   json={"attempt": job["attempt"], "lines": lines})

    def upload(self, job: dict[str, Any], path: Path) -> str:
        """Upload one file of the job; returns its SHA-256 (the hub checks it)."""
        digest = hashlib.sha256()
        with path.open("rb") as source:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
        sha256 = digest.hexdigest()

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as source:
                while chunk := source.read(CHUNK):
                    yield chunk

        self._call("PUT", f"/agent/jobs/{job['id']}/files/{path.name}",
                   params={"attempt": job["attempt"]}, content=chunks(),
                   headers={"X-Ferry-Sha256": sha256})
        return sha256

    def derive(self, job: dict[str, Any], previous: int | None) -> dict[str, Any]:
        """The steps of a masked delivery from ``previous``, computed by the hub (it may
        take as long as the change set does: the lease is renewed meanwhile)."""
        answer = self._call("POST", f"/agent/jobs/{job['id']}/derive",
                            json={"attempt": job["attempt"], "previous": previous},
                            read_timeout=DERIVE_SECONDS)
        derived: dict[str, Any] = answer.json()
        return derived

    def download(self, job: dict[str, Any], name: str, target: Path, sha256: str) -> Path:
        """Fetch one file the hub derived for the job into ``target``, hashed as it
        arrives; ``VerificationError`` (file deleted) unless it hashes to ``sha256``."""
        digest = hashlib.sha256()
        assert self.enrolled is not None
        headers = {"Authorization": f"Bearer {self.enrolled.credential}"}
        try:
            with self.http.stream("GET", f"/agent/jobs/{job['id']}/downloads/{name}",
                                  params={"attempt": job["attempt"]}, headers=headers) as answer:
                if answer.status_code >= 300:
                    answer.read()
                    _raise_for(answer, "GET", name)
                with target.open("wb") as out:
                    for chunk in answer.iter_bytes(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        except httpx.TransportError as error:
            raise TransientError(f"cannot reach the hub {self.hub}: {error}") from None
        if digest.hexdigest() != sha256.lower():
            target.unlink()
            raise VerificationError(f"{name} from the hub hashes to {digest.hexdigest()}, not "
                                    f"{sha256}; refused")
        return target

    def report(self, job: dict[str, Any], *, ok: bool, result: dict[str, Any],
               error: str | None = None) -> None:
        signature = self.identity.sign(signed_text(job["id"], job["attempt"], ok, result))
        self._call("POST", f"/agent/jobs/{job['id']}/result", json={
            "attempt": job["attempt"], "ok": ok, "result": result, "error": error,
            "signature": signature})

    def _call(self, method: str, path: str, *, authorized: bool = True,
              read_timeout: float | None = None, **options: Any) -> httpx.Response:
        headers = dict(options.pop("headers", {}))
        if authorized:
            assert self.enrolled is not None
            headers["Authorization"] = f"Bearer {self.enrolled.credential}"
        timeout: httpx.Timeout | Any = (httpx.USE_CLIENT_DEFAULT if read_timeout is None
                                        else httpx.Timeout(read_timeout, connect=10.0))
        try:
            answer = self.http.request(method, path, headers=headers, timeout=timeout,
                                       **options)
        except httpx.TransportError as error:
            raise TransientError(f"cannot reach the hub {self.hub}: {error}") from None
        if answer.status_code < 300:
            return answer
        _raise_for(answer, method, path)


def _raise_for(answer: httpx.Response, method: str, path: str) -> NoReturn:
    message = _message(answer)
    if answer.status_code == 401:
        raise AuthError(f"the hub refused this agent: {message}")
    if answer.status_code == 409:
        raise LostJob(message)
    if answer.status_code >= 500 or answer.status_code == 429:
        raise TransientError(f"the hub answered {answer.status_code}: {message}")
    raise UsageError(f"the hub refused {method} {path}: {message}")


def _message(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return answer.text[:300]
